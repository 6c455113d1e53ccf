/**
 * Actuation ids: UUIDv7 (RFC 9562), time-ordered so primary-key inserts land on the
 * index's last pages (bench/experiments/uuid-v7.sql). The layout is the `uuid` package's:
 * 48-bit Unix ms, then a 31-bit counter seeded at random each new millisecond and
 * incremented within one (ids of one process sort in creation order), then random bits.
 *
 * Why not `uuid`'s v7: it asks the OS for 16 random bytes per id (one `getRandomValues`,
 * a `randomFillSync`, per call: 2.2% of the server's CPU in the issue-12 profile); here
 * the random bytes come from a pooled buffer refilled 4 KiB at a time, as Node's own
 * `crypto.randomUUID()` does.
 */
import crypto from 'node:crypto';

const POOL_BYTES = 4096;
/** Bytes one id takes from the pool: 4 seed the counter when the millisecond is new, 6 are the random tail. */
const PER_ID = 10;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** ASCII codes of the hex digits. */
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/**
 * The id's 36 characters, written in place (dashes at 8, 13, 18, 23): one string per id, not the
 * twenty intermediate strings concatenating two-digit pieces made (README "Jobs against the bulk endpoint").
 */
const text = Buffer.alloc(36, '-', 'latin1');

function hexAt(at: number, byte: number): void {
  text[at] = DIGITS[byte >>> 4]!;
  text[at + 1] = DIGITS[byte & 0x0f]!;
}

let lastMs = -Infinity;
let counter = 0;

/** 10 bytes from the pool (refilled when short); returns where they start. */
function take(): number {
  if (offset + PER_ID > POOL_BYTES) {
    crypto.randomFillSync(pool);
    offset = 0;
  }
  const r = offset;
  offset += PER_ID;
  return r;
}

export function actuationId(): string {
  const r = take();
  let ms = Date.now();
  if (ms > lastMs) {
    counter = pool.readUInt32BE(r) & 0x7fffffff;
    lastMs = ms;
  } else {
    counter = (counter + 1) | 0;
    // 2^31 ids in one millisecond: borrow the next one, as `uuid` does.
    if (counter === 0) lastMs++;
    ms = lastMs;
  }
  return format(ms, counter, r);
}

/**
 * A UUIDv7 of the given time (`uuid`'s `v7({ msecs })`: the counter random, not the monotonic
 * one), from the same pool: the audit trail's entry ids, one per mutating request.
 */
export function uuidV7At(ms: number): string {
  const r = take();
  return format(ms, pool.readUInt32BE(r) & 0x7fffffff, r);
}

function format(ms: number, counter: number, r: number): string {
  const hi = Math.floor(ms / 0x100000000);
  const lo = ms >>> 0;
  hexAt(0, (hi >>> 8) & 0xff);
  hexAt(2, hi & 0xff);
  hexAt(4, lo >>> 24);
  hexAt(6, (lo >>> 16) & 0xff);
  hexAt(9, (lo >>> 8) & 0xff);
  hexAt(11, lo & 0xff);
  hexAt(14, 0x70 | ((counter >>> 28) & 0x0f));
  hexAt(16, (counter >>> 20) & 0xff);
  hexAt(19, 0x80 | ((counter >>> 14) & 0x3f));
  hexAt(21, (counter >>> 6) & 0xff);
  hexAt(24, ((counter << 2) & 0xff) | (pool[r + 4]! & 0x03));
  for (let i = 5; i < PER_ID; i++) hexAt(16 + 2 * i, pool[r + i]!);
  return text.toString('latin1');
}
