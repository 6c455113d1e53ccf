/**
 * The device protocol on `echo-protocol`, compatible with the original server:
 * every message is one JSON text frame. This module owns the message shapes,
 * the response codes and the close codes; the README's protocol tables mirror
 * `RESPONSE_CODES` and `CLOSE_CODES` (a test keeps them in step).
 *
 * Strings PostgreSQL cannot store (U+0000, a lone UTF-16 surrogate; `db/storable.ts`) are
 * refused here, before anything joins a batch shared with other devices:
 * - in an ack's `reasonPhrase`: the message is of the wrong format (401 `Wrong message
 *   format`, close 1003), like any other shape we do not know;
 * - in the device id (the token's `sub`) or the token's account id: the identity is
 *   refused like an invalid token (401 `Invalid device token for device`, close 1008),
 *   even when the token is validly signed — its session row could not be written.
 */
import { z } from 'zod';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../db/storable.js';

export const SUBPROTOCOL = 'echo-protocol';

/** Codes in the `code` field of messages the server sends. */
export const RESPONSE_CODES = {
  OK: { code: 200, meaning: 'Authenticated: the device is subscribed and will receive actuations' },
  PONG: { code: 202, meaning: 'Answer to {"type":"ping"}' },
  UNAUTHORIZED: { code: 401, meaning: 'Invalid device token (or a device or account id the server cannot store), wrong message format, or a message that needs authentication' },
  SERVER_ERROR: { code: 500, meaning: 'Internal server error (e.g. the database is unavailable); the socket is closed' },
  ACTUATION: { code: 1024, meaning: 'An actuation (command) for the device' },
} as const;

/** WebSocket close codes the server uses. */
export const CLOSE_CODES = {
  NORMAL: { code: 1000, meaning: 'Session replaced by a newer connection of the same device' },
  GOING_AWAY: { code: 1001, meaning: 'Server shutting down; reconnect (to another instance)' },
  UNSUPPORTED_DATA: { code: 1003, meaning: 'Message is not JSON, not a known message shape, or holds a string the server cannot store (U+0000, a lone surrogate)' },
  POLICY_VIOLATION: { code: 1008, meaning: 'Invalid device token (or an unstorable device or account id), no authentication in time, a message that needs authentication, or the token was revoked' },
  MESSAGE_TOO_BIG: { code: 1009, meaning: 'Message larger than MAX_MESSAGE_BYTES' },
  INTERNAL_ERROR: { code: 1011, meaning: 'Server error while handling the message (after a code 500 message)' },
  TRY_AGAIN_LATER: { code: 1013, meaning: 'Device sent more than DEVICE_MAX_MESSAGES_PER_SECOND (beyond DEVICE_MESSAGE_BURST) or left more than DEVICE_MAX_PENDING_MESSAGES unhandled; reconnect later, slower' },
} as const;

/** Close codes that come from the `ws` library or the network, not from a decision of this server (the README lists them too). */
export const LIBRARY_CLOSE_CODES = {
  PROTOCOL_ERROR: { code: 1002, meaning: 'A frame ws cannot accept (unmasked client frame, reserved bits, bad opcode, a control frame too long)' },
  NO_STATUS: { code: 1005, meaning: 'The peer closed without a status code' },
  ABNORMAL: { code: 1006, meaning: 'The connection dropped without a close frame (network, kill -9, a missed heartbeat pong)' },
  INVALID_PAYLOAD: { code: 1007, meaning: 'A text frame that is not valid UTF-8' },
} as const;

/** Texts of the `content` field, kept verbatim from the original server where it had them. */
export const CONTENT = {
  invalidToken: 'Invalid device token for device',
  wrongFormat: 'Wrong message format',
  notAuthenticated: 'Authenticate first with {"type":"device","deviceId","deviceToken"}',
  subscribed: 'Subscribed to ws server',
  pong: 'PONG',
  serverError: 'Internal server error',
} as const;

const deviceMessage = z.object({
  type: z.literal('device'),
  deviceId: z.string().min(1).max(256),
  deviceToken: z.string().min(1).max(16 * 1024),
});
const pingMessage = z.object({ type: z.literal('ping') });
const ackMessage = z.union([
  z.object({
    type: z.literal('ack'),
    id: z.string().uuid(),
    statusCode: z.number().int().min(100).max(999).default(200),
    reasonPhrase: z.string().max(1024).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE).optional(),
  }),
  z.object({ type: z.literal('ack'), upTo: z.number().int().positive() }),
]);

const deviceToServerMessage = z.union([deviceMessage, pingMessage, ackMessage]);

export type DeviceMessage = z.infer<typeof deviceMessage>;
export type AckMessage = z.infer<typeof ackMessage>;
export type DeviceToServerMessage = z.infer<typeof deviceToServerMessage>;

/** Whether a verified identity can be stored (its session row written); if not, it is refused as an invalid token. */
export function isStorableIdentity(identity: { deviceId: string; accountId: string | null }): boolean {
  return isStorableText(identity.deviceId) && (identity.accountId === null || isStorableText(identity.accountId));
}

/** Parses one text frame; `null` for anything that is not JSON or not a known shape. */
export function parseDeviceMessage(rawMessage: string): DeviceToServerMessage | null {
  let json: unknown;
  try {
    json = JSON.parse(rawMessage);
  } catch {
    return null;
  }
  const parsed = deviceToServerMessage.safeParse(json);
  return parsed.success ? parsed.data : null;
}

export interface ActuationCommand {
  accountId: string | null;
  deviceId: string;
  gatewayId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
}

export interface ServerMessage {
  code: number;
  content: unknown;
  id?: string;
  seq?: number;
}

export function reply(code: number, content: string): string {
  return JSON.stringify({ code, content });
}

/**
 * The original server's actuation message, plus the top-level `id` (and `seq` once actuations
 * are sequenced), as `JSON.stringify` of that object writes it. Built as text around each value's
 * own `JSON.stringify`: one frame per actuation, and the nested object cost ~1.5x as much
 * (`request-path-micro.ts`). `accountId` overrides the command's (the dispatcher's fallback to the
 * session's), so that no copy of the command is made per frame.
 */
export function actuationMessage(id: string, command: ActuationCommand, seq?: number, accountId: string | null = command.accountId): string {
  const head = seq === undefined ? `{"code":${RESPONSE_CODES.ACTUATION.code},"id":${JSON.stringify(id)}` : `{"code":${RESPONSE_CODES.ACTUATION.code},"id":${JSON.stringify(id)},"seq":${json(seq)}`;
  return (
    `${head},"content":{"type":"command","transport":"ws","content":{"accountId":${json(accountId)},"deviceId":${json(command.deviceId)},` +
    `"gatewayId":${json(command.gatewayId)},"componentId":${json(command.componentId)},"command":${json(command.command)},"params":${json(command.params)}}}}`
  );
}

/** A member's value as `JSON.stringify` of its object writes it; `null` where that would drop the member (undefined), which the types rule out. */
function json(value: unknown): string {
  return JSON.stringify(value) ?? 'null';
}
