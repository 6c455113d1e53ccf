/**
 * One device's WebSocket, from upgrade to close.
 *
 * States:
 * - AUTHENTICATING: accepts only `device` (authenticate) and `ping`; anything else
 *   is a 401 and a close. Closed with 1008 when `authTimeoutMs` passes first.
 * - AUTHENTICATED: the session row exists; actuations can be pushed; `ping` and
 *   `ack` are accepted.
 * - CLOSED: the socket is gone; the session row has been (or is being) closed.
 *
 * Messages are handled one at a time in arrival order (authentication awaits the
 * database), so a device that sends `device` then `ack` is never answered out of order.
 *
 * Each socket's queue of received, unhandled messages is bounded (`maxPendingMessages`)
 * and so is its rate (a token bucket: `maxMessagesPerSecond`, `messageBurst` at once):
 * beyond either the device is closed with 1013 and what it still sends is dropped, so a
 * flooding device costs the server no more than its bound while others are served. The
 * bucket belongs to the device, not the socket: the gateway keeps what is left of it when
 * the socket closes and hands it to the device's next socket (`adoptMessageBudget`), so
 * reconnecting does not buy a new burst.
 */
import type { WebSocket } from 'ws';
import type { LogSampler } from '../log-sampler.js';
import type { Logger } from '../logger.js';
import { CLOSE_CODES, CONTENT, RESPONSE_CODES, parseDeviceMessage, reply, type AckMessage, type DeviceMessage } from './protocol.js';

export const AUTHENTICATING = 'authenticating';
export const AUTHENTICATED = 'authenticated';
export const CLOSED = 'closed';
export type ConnectionState = typeof AUTHENTICATING | typeof AUTHENTICATED | typeof CLOSED;

export interface ConnectionHandlers {
  /** Verifies the token and opens the session; returns false when the token is invalid. Throws on server errors. */
  authenticate(connection: DeviceConnection, message: DeviceMessage): Promise<boolean>;
  ack(connection: DeviceConnection, message: AckMessage): Promise<void>;
  closed(connection: DeviceConnection): void;
}

export interface ConnectionPolicy {
  authTimeoutMs: number;
  maxPendingMessages: number;
  maxMessagesPerSecond: number;
  messageBurst: number;
  /** With this much buffered for the socket, a ping is not answered: the device is not reading (and may not grow the buffer). */
  maxBufferedBytes: number;
  /** Client mistakes (malformed messages, floods) are logged through it: no device controls the log's growth. */
  sampler: LogSampler;
}

/** How long a flooding device gets to complete the closing handshake before its socket is destroyed. */
const FLOOD_CLOSE_GRACE_MS = 1_000;

export class DeviceConnection {
  state: ConnectionState = AUTHENTICATING;
  deviceId: string | null = null;
  accountId: string | null = null;
  sessionId: number | null = null;
  /** The `iat` (seconds) of the token this connection authenticated with, `null` without one: checked against revocations while connected. */
  tokenIssuedAt: number | null = null;
  lastSeenAt = new Date();
  /** Set when a pong or message arrived since the last heartbeat ping. */
  isAlive = true;
  /** The close code and reason the server chose; the peer's echo may not carry the reason. */
  closeIntent: { code: number; reason: string } | null = null;

  private queue: Promise<void> = Promise.resolve();
  /** Messages received and not yet handled. */
  private pending = 0;
  /** Token bucket of the message rate: tokens left and when it was last refilled. */
  private tokens: number;
  private refilledAt = Date.now();
  /** Set once closed for flooding: further messages are dropped unread. */
  private flooded = false;
  /** Cleared and dropped once authenticated: a long-lived socket does not keep a spent timer. */
  private authTimer: NodeJS.Timeout | undefined;
  /** Base loggers; the child with this connection's bindings is made on first use (most connections never log). */
  private baseLogger: Logger;
  private sessionBaseLogger: Logger | undefined;
  private childLogger: Logger | undefined;

  constructor(
    readonly socket: WebSocket,
    readonly remoteAddress: string | null,
    private readonly handlers: ConnectionHandlers,
    logger: Logger,
    private readonly policy: ConnectionPolicy,
  ) {
    this.baseLogger = logger;
    this.tokens = policy.messageBurst;
    this.authTimer = setTimeout(() => this.close(CLOSE_CODES.POLICY_VIOLATION.code, 'authentication timeout'), policy.authTimeoutMs);
    socket.on('message', (data, isBinary) => this.socketOnMessage(data as Buffer, isBinary));
    socket.on('pong', () => this.markSeen());
    socket.on('close', (code, reason) => this.socketOnClose(code, reason.toString()));
    socket.on('error', (err) => {
      // ws closes the socket itself after an error (1009 for an oversized frame); record why.
      const code = (err as Error & { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? CLOSE_CODES.MESSAGE_TOO_BIG.code : 1002;
      this.closeIntent ??= { code, reason: err.message };
      this.log.info({ err }, 'device socket: protocol error');
    });
  }

  /** Sends one text frame; false if the socket is no longer open. */
  send(text: string): boolean {
    if (this.socket.readyState !== this.socket.OPEN) return false;
    this.socket.send(text);
    return true;
  }

  /** Bytes written to this socket and not yet taken by the kernel (ws's queue and the socket's buffer). */
  bufferedBytes(): number {
    return this.socket.bufferedAmount;
  }

  close(code: number, reason: string): void {
    if (this.state === CLOSED) return;
    this.closeIntent ??= { code, reason };
    this.socket.close(code, reason);
  }

  /** For peers that stopped answering: no closing handshake, the socket is destroyed. */
  terminate(reason: string): void {
    this.closeIntent ??= { code: 1006, reason };
    this.socket.terminate();
  }

  markSeen(): void {
    this.isAlive = true;
    this.lastSeenAt = new Date();
  }

  /**
   * This connection's logger: before authentication `logger.child({ remoteAddress })`
   * of the constructor's logger, after it `sessionLogger.child({ deviceId, sessionId })`.
   * Made on first use: a pino child costs a redaction pass and a few hundred bytes.
   */
  get log(): Logger {
    this.childLogger ??=
      this.sessionBaseLogger === undefined
        ? this.baseLogger.child({ remoteAddress: this.remoteAddress })
        : this.sessionBaseLogger.child({ deviceId: this.deviceId, sessionId: this.sessionId });
    return this.childLogger;
  }

  /** What is left of this socket's message budget (tokens, and when last refilled). */
  messageBudget(): { tokens: number; refilledAt: number } {
    return { tokens: this.tokens, refilledAt: this.refilledAt };
  }

  /** Continues the device's budget from its previous socket (refilled for the time since), if that left less. */
  adoptMessageBudget(previous: { tokens: number; refilledAt: number }): void {
    const now = Date.now();
    const carried = Math.min(this.policy.messageBurst, previous.tokens + ((now - previous.refilledAt) / 1000) * this.policy.maxMessagesPerSecond);
    const own = Math.min(this.policy.messageBurst, this.tokens + ((now - this.refilledAt) / 1000) * this.policy.maxMessagesPerSecond);
    this.tokens = Math.min(own, carried);
    this.refilledAt = now;
  }

  markAuthenticated(deviceId: string, accountId: string | null, sessionId: number, sessionLogger: Logger): void {
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.state = AUTHENTICATED;
    this.deviceId = deviceId;
    this.accountId = accountId;
    this.sessionId = sessionId;
    this.sessionBaseLogger = sessionLogger;
    this.childLogger = undefined;
  }

  private socketOnMessage(data: Buffer, isBinary: boolean): void {
    if (this.flooded) return;
    this.markSeen();
    const now = Date.now();
    this.tokens = Math.min(this.policy.messageBurst, this.tokens + ((now - this.refilledAt) / 1000) * this.policy.maxMessagesPerSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return this.closeFlooding('message rate above DEVICE_MAX_MESSAGES_PER_SECOND');
    this.tokens -= 1;
    if (this.pending >= this.policy.maxPendingMessages) return this.closeFlooding('more than DEVICE_MAX_PENDING_MESSAGES messages unhandled');
    this.pending++;
    const rawMessage = isBinary ? null : data.toString('utf8');
    this.queue = this.queue
      .then(() => this.handle(rawMessage))
      .catch((err) => this.failWithServerError(err))
      .finally(() => this.pending--);
  }

  /** Closes with 1013; what is still queued and what the device sends after this is dropped. */
  private closeFlooding(reason: string): void {
    this.flooded = true;
    this.policy.sampler.log('device_flood', 'info', { deviceId: this.deviceId, remoteAddress: this.remoteAddress, reason }, 'device: closed for flooding');
    this.close(CLOSE_CODES.TRY_AGAIN_LATER.code, reason);
    // A flooder need not complete the closing handshake: cut it off rather than keep parsing its frames.
    setTimeout(() => this.socket.terminate(), FLOOD_CLOSE_GRACE_MS).unref();
  }

  private async handle(rawMessage: string | null): Promise<void> {
    if (this.state === CLOSED || this.flooded) return;
    const message = rawMessage === null ? null : parseDeviceMessage(rawMessage);
    if (message === null) {
      this.policy.sampler.log(
        'device_malformed_message',
        'debug',
        { deviceId: this.deviceId, remoteAddress: this.remoteAddress, binary: rawMessage === null, length: rawMessage?.length ?? null },
        'device: malformed message',
      );
      this.send(reply(RESPONSE_CODES.UNAUTHORIZED.code, CONTENT.wrongFormat));
      this.close(CLOSE_CODES.UNSUPPORTED_DATA.code, 'wrong message format');
      return;
    }
    switch (message.type) {
      case 'ping':
        if (this.bufferedBytes() < this.policy.maxBufferedBytes) this.send(reply(RESPONSE_CODES.PONG.code, CONTENT.pong));
        return;
      case 'device':
        return this.handleAuthenticate(message);
      case 'ack':
        if (this.state !== AUTHENTICATED) return this.rejectUnauthenticated();
        return this.handlers.ack(this, message);
    }
  }

  private async handleAuthenticate(message: DeviceMessage): Promise<void> {
    if (this.state === AUTHENTICATED && message.deviceId !== this.deviceId) {
      // One socket is one device: switching identity mid-session is refused.
      this.send(reply(RESPONSE_CODES.UNAUTHORIZED.code, CONTENT.invalidToken));
      this.close(CLOSE_CODES.POLICY_VIOLATION.code, 'device id changed');
      return;
    }
    const ok = await this.handlers.authenticate(this, message);
    if (this.state === CLOSED) return;
    if (!ok) {
      this.send(reply(RESPONSE_CODES.UNAUTHORIZED.code, CONTENT.invalidToken));
      this.close(CLOSE_CODES.POLICY_VIOLATION.code, 'invalid device token');
    }
  }

  private rejectUnauthenticated(): void {
    this.send(reply(RESPONSE_CODES.UNAUTHORIZED.code, CONTENT.notAuthenticated));
    this.close(CLOSE_CODES.POLICY_VIOLATION.code, 'not authenticated');
  }

  private failWithServerError(err: unknown): void {
    this.log.error({ err }, 'device socket: server error');
    this.send(reply(RESPONSE_CODES.SERVER_ERROR.code, CONTENT.serverError));
    this.close(CLOSE_CODES.INTERNAL_ERROR.code, 'internal server error');
  }

  private socketOnClose(code: number, reason: string): void {
    clearTimeout(this.authTimer);
    this.state = CLOSED;
    this.closeIntent ??= { code, reason };
    this.handlers.closed(this);
  }
}
