/**
 * DSS frames: `LEN|PAYLOAD`, where PAYLOAD is `Z` (a heartbeat, `1|Z`) or a JSON
 * event. The frame is cut by its length prefix, never by splitting on `|`,
 * because `|` may occur inside the JSON.
 *
 * LEN counts UTF-8 bytes. The DSS docs only say "the length of the JSON event
 * string" and show ASCII examples, where bytes and characters agree; a length
 * prefix on the wire counts bytes, and that is what our simulator sends. A
 * single frame whose LEN instead equals its length in UTF-16 code units (what a
 * JavaScript server's `json.length` would give) is accepted too, so that an
 * event with a non-ASCII value is never lost over the unit question.
 *
 * Each WebSocket message is parsed on its own: DSS sends one frame per message
 * (the docs' MessageEvent is a heartbeat or one event). Several frames joined in
 * one message are split by their lengths. A frame is never completed from the
 * next message: a short frame is a length error, and buffering would let one bad
 * length corrupt every frame after it.
 */
import { DSS_ERRORS, type DssErrorCode } from './errors.js';

export type Frame =
  | { kind: 'heartbeat' }
  | { kind: 'event'; rawEvent: Record<string, unknown> }
  | { kind: 'invalid'; code: DssErrorCode; message: string };

const PIPE = 0x7c;
const MAX_LENGTH_DIGITS = 10;

export function parseFrames(data: Buffer | string): Frame[] {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const frames: Frame[] = [];
  let offset = 0;
  while (offset < buf.length && !isBlank(buf, offset)) {
    const prefix = readPrefix(buf, offset);
    if (!prefix) {
      frames.push(invalid('DSS_ERR_FRAME_PREFIX', `at byte ${offset}`));
      return frames;
    }
    const { length, payloadStart } = prefix;
    const payloadEnd = payloadStart + length;
    if (payloadEnd <= buf.length && (isBlank(buf, payloadEnd) || readPrefix(buf, payloadEnd))) {
      frames.push(parsePayload(buf.toString('utf8', payloadStart, payloadEnd)));
      offset = payloadEnd;
      continue;
    }
    // Not a byte count that fits: maybe LEN counted UTF-16 code units (rest of the message is this frame).
    const rest = buf.toString('utf8', payloadStart).trimEnd();
    if (rest.length === length) frames.push(parsePayload(rest));
    else frames.push(invalid('DSS_ERR_FRAME_LENGTH', `LEN ${length}, payload ${buf.length - payloadStart} bytes`));
    return frames;
  }
  return frames;
}

/** Builds a frame as DSS sends it (LEN in UTF-8 bytes). */
export function formatFrame(payload: string): string {
  return `${Buffer.byteLength(payload, 'utf8')}|${payload}`;
}

export const HEARTBEAT_FRAME = '1|Z';
export const HEARTBEAT_ANSWER = 'Z';

function readPrefix(buf: Buffer, offset: number): { length: number; payloadStart: number } | undefined {
  let i = offset;
  while (i < buf.length && i - offset <= MAX_LENGTH_DIGITS && isDigit(buf[i]!)) i++;
  if (i === offset || i - offset > MAX_LENGTH_DIGITS || buf[i] !== PIPE) return undefined;
  return { length: Number(buf.toString('latin1', offset, i)), payloadStart: i + 1 };
}

function parsePayload(payload: string): Frame {
  if (payload === 'Z') return { kind: 'heartbeat' };
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch (err) {
    return invalid('DSS_ERR_FRAME_JSON', (err as Error).message);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return invalid('DSS_ERR_FRAME_JSON', 'not an object');
  return { kind: 'event', rawEvent: value as Record<string, unknown> };
}

function invalid(code: DssErrorCode, detail: string): Frame {
  return { kind: 'invalid', code, message: `${DSS_ERRORS[code]} (${detail})` };
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

/** Only whitespace from `offset` to the end (a trailing newline is not a frame). */
function isBlank(buf: Buffer, offset: number): boolean {
  for (let i = offset; i < buf.length; i++) {
    const b = buf[i]!;
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return false;
  }
  return true;
}
