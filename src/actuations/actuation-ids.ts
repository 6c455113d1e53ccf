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

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

let lastMs = -Infinity;
let counter = 0;

export function actuationId(): string {
  if (offset + PER_ID > POOL_BYTES) {
    crypto.randomFillSync(pool);
    offset = 0;
  }
  const r = offset;
  offset += PER_ID;
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
  const hi = Math.floor(ms / 0x100000000);
  const lo = ms >>> 0;
  return (
    HEX[(hi >>> 8) & 0xff]! +
    HEX[hi & 0xff]! +
    HEX[lo >>> 24]! +
    HEX[(lo >>> 16) & 0xff]! +
    '-' +
    HEX[(lo >>> 8) & 0xff]! +
    HEX[lo & 0xff]! +
    '-' +
    HEX[0x70 | ((counter >>> 28) & 0x0f)]! +
    HEX[(counter >>> 20) & 0xff]! +
    '-' +
    HEX[0x80 | ((counter >>> 14) & 0x3f)]! +
    HEX[(counter >>> 6) & 0xff]! +
    '-' +
    HEX[((counter << 2) & 0xff) | (pool[r + 4]! & 0x03)]! +
    HEX[pool[r + 5]!]! +
    HEX[pool[r + 6]!]! +
    HEX[pool[r + 7]!]! +
    HEX[pool[r + 8]!]! +
    HEX[pool[r + 9]!]!
  );
}
