/**
 * The device gateway: WebSocket upgrades on the shared HTTP server, device
 * authentication, the registry of this instance's connected devices, sessions in
 * PostgreSQL and the heartbeat that finds dead peers.
 *
 * What happens to actuations is not the gateway's business: it reports
 * `authenticated`, `ack` and `disconnected` to the `DeviceEvents` it is given.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Config } from '../config/config.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { makeLogSampler } from '../log-sampler.js';
import type { Logger } from '../logger.js';
import { backoffDelayMs } from '../simulator/backoff.js';
import { AUTHENTICATED, CLOSED, DeviceConnection, type ConnectionState } from './device-connection.js';
import type { DeviceTokenChecker, TokenRefusalReason } from './device-token.js';
import { CLOSE_CODES, CONTENT, RESPONSE_CODES, SUBPROTOCOL, isStorableIdentity, reply, type AckMessage, type DeviceMessage } from './protocol.js';
import { makeSessionOpener } from './session-opener.js';
import * as sessions from './sessions-sql.js';
import type { TokenRevocations } from './token-revocations.js';

export interface DeviceEvents {
  /**
   * After the session row is written and the 200 is sent. `opened`: whether the session
   * statement saw actuations pending for the device, and when (`performance.now()`) it was requested.
   */
  authenticated?(connection: DeviceConnection, opened: { hadPending: boolean; requestedAt: number }): void;
  ack?(connection: DeviceConnection, message: AckMessage): Promise<void>;
  /** A refused device token, with why (a bounded set: safe as a metric label). */
  authenticationFailed?(deviceId: string, reason: TokenRefusalReason): void;
  disconnected?(connection: DeviceConnection): void;
}

export interface GatewayOptions {
  config: Pick<
    Config,
    | 'instanceId'
    | 'authTimeoutMs'
    | 'maxMessageBytes'
    | 'heartbeatIntervalMs'
    | 'databaseTimeoutMs'
    | 'deviceMaxPendingMessages'
    | 'deviceMaxMessagesPerSecond'
    | 'deviceMessageBurst'
    | 'deviceMaxBufferedBytes'
  >;
  logger: Logger;
  pool: Pool;
  checkDeviceToken: DeviceTokenChecker;
  /** Device token revocations (POST /v1/devices/:id/revoke-tokens): refused at connect, and closed while connected by `closeRevoked`. */
  revocations?: Pick<TokenRevocations, 'refuses'>;
  events?: DeviceEvents;
}

export interface Gateway {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** The authenticated connection of a device on this instance, if any. */
  connectionOf(deviceId: string): DeviceConnection | undefined;
  connectedDeviceCount(): number;
  /** Closes this instance's connection of a device whose session was taken over elsewhere. */
  endTakenOverSession(deviceId: string, sessionId: number): void;
  /** Closes (1008) this instance's connections whose token is now revoked: of one device, or of every device when none is given. */
  closeRevoked(deviceId?: string): void;
  /** Refuses new upgrades with 503 and closes every socket with 1001; resolves when their rows are closed. */
  close(): Promise<void>;
}

export function makeGateway(options: GatewayOptions): Gateway {
  const { config, logger, pool, checkDeviceToken, revocations, events = {} } = options;
  const log = logger.child({ component: 'gateway' });
  // Refused tokens, handshakes and malformed messages are the clients' to repeat: a few per minute are logged.
  const sampler = makeLogSampler(log);
  const policy = {
    authTimeoutMs: config.authTimeoutMs,
    maxPendingMessages: config.deviceMaxPendingMessages,
    maxMessagesPerSecond: config.deviceMaxMessagesPerSecond,
    messageBurst: config.deviceMessageBurst,
    maxBufferedBytes: config.deviceMaxBufferedBytes,
    sampler,
  };
  const registry = new Map<string, DeviceConnection>();
  /**
   * Message budgets of devices whose socket closed with less than a full bucket, for their
   * next socket here (see device-connection.ts). Bounded: beyond MAX_KEPT_BUDGETS the
   * oldest go (a budget refills to full within DEVICE_MESSAGE_BURST / DEVICE_MAX_MESSAGES_PER_SECOND).
   */
  const keptBudgets = new Map<string, { tokens: number; refilledAt: number }>();
  const all = new Set<DeviceConnection>();
  const pendingCloses = new Set<Promise<void>>();
  /** Authentications awaiting the database: close() waits for them, since they close their own row if the socket went away. */
  const authenticating = new Set<Promise<boolean>>();
  let closing = false;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxMessageBytes,
    clientTracking: false,
    // The original server spoke only echo-protocol; the upgrade is refused before we get here otherwise.
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  // A bad upgrade (method, Upgrade or Sec-WebSocket-* headers): logged, then answered as ws would.
  wss.on('wsClientError', (err, socket, req) => {
    sampler.log('handshake_refused', 'debug', { remoteAddress: req.socket.remoteAddress ?? null, reason: err.message }, 'device: handshake refused');
    abortHandshake(socket, req.method === 'GET' ? 400 : 405, 'BAD_UPGRADE', err.message);
  });

  async function authenticate(connection: DeviceConnection, message: DeviceMessage): Promise<boolean> {
    const check = checkDeviceToken(message.deviceId, message.deviceToken);
    let reason: TokenRefusalReason | undefined;
    if (!check.ok) reason = check.reason;
    // A validly signed identity PostgreSQL cannot store is refused like a malformed token (see protocol.ts).
    else if (!isStorableIdentity(check.device)) reason = 'malformed';
    // Revoked (iat before the device's revocation, or none): a map look-up, no query (see token-revocations.ts).
    else if (revocations?.refuses(check.device.deviceId, check.issuedAt)) reason = 'revoked';
    if (reason !== undefined || !check.ok) {
      reason ??= 'malformed';
      sampler.log('device_token_refused', 'info', { deviceId: message.deviceId, remoteAddress: connection.remoteAddress, reason }, 'device: invalid token');
      events.authenticationFailed?.(message.deviceId, reason);
      return false;
    }
    const verified = check.device;
    if (connection.state === AUTHENTICATED) {
      // A repeated, valid `device` message on the same socket (as old agents send): confirm, no new session.
      // Its token is the one that counts from now on (a fresh token outlives a revocation of the old one).
      connection.tokenIssuedAt = check.issuedAt;
      connection.send(reply(RESPONSE_CODES.OK.code, CONTENT.subscribed));
      return true;
    }
    const requestedAt = performance.now();
    const opened = await sessionOpener.add({ deviceId: verified.deviceId, accountId: verified.accountId, remoteAddress: connection.remoteAddress });
    if (opened instanceof Error) throw opened;
    if (connection.state === CLOSED) {
      // The device went away while its session was being written: close the row at once.
      const { code, reason } = connection.closeIntent ?? { code: 1005, reason: '' };
      await sessions.closeSession(pool, { deviceId: verified.deviceId, sessionId: opened.sessionId }, code, reason, connection.lastSeenAt);
      return true;
    }
    connection.markAuthenticated(verified.deviceId, verified.accountId, opened.sessionId, logger);
    connection.tokenIssuedAt = check.issuedAt;
    const budget = keptBudgets.get(verified.deviceId);
    if (budget) {
      keptBudgets.delete(verified.deviceId);
      connection.adoptMessageBudget(budget);
    }

    if (opened.replaced && opened.replaced.instanceId !== config.instanceId) {
      await sessions.notifySessionReplaced(pool, { deviceId: verified.deviceId, ...opened.replaced });
      // Gone while the takeover was announced: closed() has closed the row; do not register a dead socket.
      // (`as ConnectionState`: TypeScript keeps the narrowing from before the await.)
      if ((connection.state as ConnectionState) === CLOSED) return true;
    }
    const previous = registry.get(verified.deviceId);
    registry.set(verified.deviceId, connection);
    if (previous && previous !== connection) {
      previous.close(CLOSE_CODES.NORMAL.code, 'session replaced');
    }
    // Revoked while its session was being written (the revocation found it not yet registered).
    if (closeIfRevoked(connection)) return true;
    connection.send(reply(RESPONSE_CODES.OK.code, CONTENT.subscribed));
    if (logger.isLevelEnabled('info')) connection.log.info({ accountId: verified.accountId, replaced: opened.replaced }, 'device: authenticated');
    events.authenticated?.(connection, { hadPending: opened.hadPending, requestedAt });
    return true;
  }

  function closeIfRevoked(connection: DeviceConnection): boolean {
    if (connection.deviceId === null || !revocations?.refuses(connection.deviceId, connection.tokenIssuedAt)) return false;
    connection.log.info({ tokenIssuedAt: connection.tokenIssuedAt }, 'device: token revoked; closing');
    connection.send(reply(RESPONSE_CODES.UNAUTHORIZED.code, CONTENT.invalidToken));
    connection.close(CLOSE_CODES.POLICY_VIOLATION.code, 'device token revoked');
    return true;
  }

  const sessionOpener = makeSessionOpener({ pool, instanceId: config.instanceId, flushTimeoutMs: config.databaseTimeoutMs });

  async function ack(connection: DeviceConnection, message: AckMessage): Promise<void> {
    if (events.ack) await events.ack(connection, message);
  }

  function closed(connection: DeviceConnection): void {
    all.delete(connection);
    const { deviceId, sessionId } = connection;
    if (deviceId === null || sessionId === null) return;
    if (registry.get(deviceId) === connection) registry.delete(deviceId);
    keepBudget(deviceId, connection.messageBudget());
    const { code, reason } = connection.closeIntent ?? { code: 1005, reason: '' };
    connection.log.info({ code, reason }, 'device: disconnected');
    const done = closeSessionRow(connection, { deviceId, sessionId }, code, reason).finally(() => pendingCloses.delete(done));
    pendingCloses.add(done);
    events.disconnected?.(connection);
  }

  function keepBudget(deviceId: string, budget: { tokens: number; refilledAt: number }): void {
    const full = budget.tokens + ((Date.now() - budget.refilledAt) / 1000) * config.deviceMaxMessagesPerSecond >= config.deviceMessageBurst;
    if (full) return;
    keptBudgets.delete(deviceId);
    keptBudgets.set(deviceId, budget);
    // Maps iterate in insertion order: the first key is the oldest.
    if (keptBudgets.size > MAX_KEPT_BUDGETS) keptBudgets.delete(keptBudgets.keys().next().value!);
  }

  /**
   * A session row left open would show the device online until it returns (maybe never), so
   * a close the database could not take is retried while it is unavailable, with the time the
   * socket closed. Once the gateway is closing, one last try: the shutdown deadline is bounded,
   * and rows this instance leaves open are closed as `instance lost` by the others.
   */
  async function closeSessionRow(connection: DeviceConnection, session: { deviceId: string; sessionId: number }, code: number, reason: string): Promise<void> {
    const disconnectedAt = new Date();
    for (let attempt = 0; ; attempt++) {
      try {
        await sessions.closeSession(pool, session, code, reason, connection.lastSeenAt, disconnectedAt);
        if (attempt > 0) connection.log.info({ attempts: attempt + 1 }, 'device: session row closed after the database came back');
        return;
      } catch (err) {
        if (!isDatabaseUnavailable(err) || closing) {
          connection.log.error({ err }, 'device: could not close session row');
          return;
        }
        if (attempt === 0) connection.log.warn({ err }, 'device: session row not closed yet (database unavailable); retrying');
        await new Promise((resolve) => setTimeout(resolve, backoffDelayMs(attempt, { initialMs: 200, maxMs: 2_000 })));
      }
    }
  }

  function trackedAuthenticate(connection: DeviceConnection, message: DeviceMessage): Promise<boolean> {
    const attempt = authenticate(connection, message);
    authenticating.add(attempt);
    attempt.then(
      () => authenticating.delete(attempt),
      () => authenticating.delete(attempt),
    );
    return attempt;
  }

  const handlers = { authenticate: trackedAuthenticate, ack, closed };

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closing) return abortHandshake(socket, 503, 'SHUTTING_DOWN', 'Server shutting down');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      sampler.log('handshake_refused', 'debug', { remoteAddress: req.socket.remoteAddress ?? null, reason: 'subprotocol' }, 'device: handshake refused');
      return abortHandshake(socket, 400, 'SUBPROTOCOL_REQUIRED', `WebSocket subprotocol "${SUBPROTOCOL}" required`);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // The handshake finished after close() began: nobody will close this one later.
      if (closing) return ws.close(CLOSE_CODES.GOING_AWAY.code, 'server shutting down');
      const remoteAddress = req.socket.remoteAddress ?? null;
      const connection = new DeviceConnection(ws, remoteAddress, handlers, log, policy);
      all.add(connection);
    });
  }

  // Heartbeat: ping every interval; a socket that has not answered (or sent anything)
  // since the previous ping is terminated. The same tick flushes last_seen_at in one statement.
  const heartbeat = setInterval(() => {
    const devices: string[] = [];
    const ids: number[] = [];
    const seen: Date[] = [];
    for (const connection of all) {
      if (!connection.isAlive) {
        connection.log.info('device: heartbeat timeout');
        connection.terminate('heartbeat timeout');
        continue;
      }
      connection.isAlive = false;
      connection.socket.ping();
      if (connection.sessionId !== null && connection.deviceId !== null) {
        devices.push(connection.deviceId);
        ids.push(connection.sessionId);
        seen.push(connection.lastSeenAt);
      }
    }
    sessions.touchSessions(pool, devices, ids, seen).catch((err) => log.warn({ err }, 'gateway: could not refresh last_seen_at'));
  }, config.heartbeatIntervalMs);
  heartbeat.unref();

  return {
    handleUpgrade,
    connectionOf: (deviceId) => registry.get(deviceId),
    connectedDeviceCount: () => registry.size,
    endTakenOverSession(deviceId, sessionId) {
      const connection = registry.get(deviceId);
      if (connection && connection.sessionId === sessionId) connection.close(CLOSE_CODES.NORMAL.code, 'session replaced');
    },
    closeRevoked(deviceId) {
      if (deviceId !== undefined) {
        const connection = registry.get(deviceId);
        if (connection) closeIfRevoked(connection);
        return;
      }
      for (const connection of registry.values()) closeIfRevoked(connection);
    },
    async close() {
      closing = true;
      clearInterval(heartbeat);
      const sockets = [...all];
      await Promise.all(
        sockets.map(
          (connection) =>
            new Promise<void>((resolve) => {
              connection.socket.once('close', () => resolve());
              connection.close(CLOSE_CODES.GOING_AWAY.code, 'server shutting down');
              // A peer that does not complete the closing handshake is cut off.
              setTimeout(() => connection.socket.terminate(), 2_000).unref();
            }),
        ),
      );
      await Promise.allSettled([...authenticating]);
      await Promise.all([...pendingCloses]);
      wss.close();
    },
  };
}

/** Message budgets kept for reconnecting devices (about 100 bytes each). */
const MAX_KEPT_BUDGETS = 100_000;

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 405: 'Method Not Allowed', 503: 'Service Unavailable' };

function abortHandshake(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n` +
      'Connection: close\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
