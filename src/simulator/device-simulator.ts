/**
 * A simulated device agent: a client of the server, not part of it. It speaks the
 * device protocol the way field agents do, so it serves `npm run device`, tests and
 * the bench alike.
 *
 * States of one device:
 * - CONNECTING: the WebSocket handshake (`echo-protocol`) is under way.
 * - AUTHENTICATING: `{"type":"device",...}` sent; waiting for code 200. No answer within
 *   `authTimeoutMs` counts as a failed attempt.
 * - AUTHENTICATED: actuations (code 1024) are reported and acknowledged as `ack` says;
 *   `{"type":"ping"}` goes out every `pingIntervalMs`, and a ping still unanswered when
 *   the next one is due means the server is gone: the socket is terminated.
 * - WAITING: the socket closed; reconnecting after an exponential backoff with jitter
 *   (reset once authenticated again).
 * - STOPPED: `stop()` was called, or the server refused the token (code 401): a
 *   device with a bad token does not hammer the server.
 */
import WebSocket from 'ws';
import { RESPONSE_CODES, SUBPROTOCOL } from '../gateway/protocol.js';
import { backoffDelayMs, type BackoffOptions } from './backoff.js';

export const CONNECTING = 'connecting';
export const AUTHENTICATING = 'authenticating';
export const AUTHENTICATED = 'authenticated';
export const WAITING = 'waiting';
export const STOPPED = 'stopped';
export type SimulatedDeviceState = typeof CONNECTING | typeof AUTHENTICATING | typeof AUTHENTICATED | typeof WAITING | typeof STOPPED;

/** How the device answers actuations: `ok` acks with 200, `fail` with 500, `none` never acks. */
export type AckMode = 'ok' | 'fail' | 'none';

const ACK_ANSWERS = {
  ok: { statusCode: 200, reasonPhrase: 'OK' },
  fail: { statusCode: 500, reasonPhrase: 'Internal Server Error' },
} as const;

/** A code-1024 message as the server sends it. */
export interface ActuationMessage {
  code: 1024;
  id?: string;
  seq?: number;
  content: unknown;
}

export type SimulatedDeviceEvent =
  | { type: 'device:connecting'; deviceId: string; attempt: number }
  | { type: 'device:authenticated'; deviceId: string }
  | { type: 'device:actuation'; deviceId: string; receivedAt: Date; message: ActuationMessage }
  | { type: 'device:ack-sent'; deviceId: string; id: string; statusCode: number }
  | { type: 'device:pong'; deviceId: string }
  | { type: 'device:server-message'; deviceId: string; message: unknown }
  | { type: 'device:rejected'; deviceId: string; code: number; content: unknown }
  | { type: 'device:error'; deviceId: string; error: Error }
  | { type: 'device:disconnected'; deviceId: string; code: number; reason: string; reconnectInMs: number | null };

export interface SimulatedDeviceOptions {
  /** Server URL, e.g. `ws://localhost:5000/`. */
  url: string;
  deviceId: string;
  /** The device token, or a function that makes one for each connection (so expiry never matters). */
  token: string | ((deviceId: string) => string);
  /** (Default: `ok`) */
  ack?: AckMode;
  /** Interval of `{"type":"ping"}` once authenticated; 0 turns pings off. (Default: 30 000) */
  pingIntervalMs?: number;
  /** Time for the handshake and for the answer to the device message. (Default: 10 000) */
  authTimeoutMs?: number;
  backoff?: BackoffOptions;
  onEvent?: (event: SimulatedDeviceEvent) => void;
}

export interface SimulatedDeviceStats {
  connects: number;
  authentications: number;
  actuations: number;
  acksSent: number;
}

export interface SimulatedDevice {
  readonly deviceId: string;
  readonly state: SimulatedDeviceState;
  readonly stats: Readonly<SimulatedDeviceStats>;
  /** Resolves once authenticated (now or later); rejects if the device stops first. */
  authenticated(): Promise<void>;
  /** Closes the socket with 1000 and stops reconnecting; resolves when the socket is closed. */
  stop(): Promise<void>;
}

export function makeSimulatedDevice(options: SimulatedDeviceOptions): SimulatedDevice {
  const { url, deviceId } = options;
  const ack = options.ack ?? 'ok';
  const pingIntervalMs = options.pingIntervalMs ?? 30_000;
  const authTimeoutMs = options.authTimeoutMs ?? 10_000;
  const emit = (event: SimulatedDeviceEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A faulty listener must not break the device.
    }
  };

  let state: SimulatedDeviceState = WAITING;
  let socket: WebSocket | undefined;
  let failedAttempts = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let authTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  let awaitingPong = false;
  let rejected = false;
  const stats: SimulatedDeviceStats = { connects: 0, authentications: 0, actuations: 0, acksSent: 0 };
  let waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  let stopped: Promise<void> | undefined;

  function connect(): void {
    state = CONNECTING;
    stats.connects++;
    emit({ type: 'device:connecting', deviceId, attempt: failedAttempts });
    let token: string;
    try {
      token = typeof options.token === 'function' ? options.token(deviceId) : options.token;
    } catch (err) {
      emit({ type: 'device:error', deviceId, error: err as Error });
      return stopWith(err as Error);
    }
    const ws = new WebSocket(url, SUBPROTOCOL, { handshakeTimeout: authTimeoutMs });
    socket = ws;
    ws.on('open', () => socketOnOpen(ws, token));
    ws.on('message', (data, isBinary) => socketOnMessage(ws, isBinary ? null : data.toString()));
    ws.on('error', (error) => emit({ type: 'device:error', deviceId, error }));
    ws.on('close', (code, reason) => socketOnClose(ws, code, reason.toString()));
  }

  function socketOnOpen(ws: WebSocket, token: string): void {
    state = AUTHENTICATING;
    ws.send(JSON.stringify({ type: 'device', deviceId, deviceToken: token }));
    authTimer = setTimeout(() => ws.terminate(), authTimeoutMs);
  }

  function socketOnMessage(ws: WebSocket, rawMessage: string | null): void {
    let message: { code?: unknown; id?: unknown; content?: unknown };
    try {
      message = JSON.parse(rawMessage ?? '') as typeof message;
    } catch {
      emit({ type: 'device:server-message', deviceId, message: rawMessage });
      return;
    }
    switch (message.code) {
      case RESPONSE_CODES.OK.code:
        if (state !== AUTHENTICATING) return;
        clearTimeout(authTimer);
        state = AUTHENTICATED;
        failedAttempts = 0;
        stats.authentications++;
        startPinging(ws);
        emit({ type: 'device:authenticated', deviceId });
        for (const waiter of waiters) waiter.resolve();
        waiters = [];
        return;
      case RESPONSE_CODES.PONG.code:
        awaitingPong = false;
        emit({ type: 'device:pong', deviceId });
        return;
      case RESPONSE_CODES.UNAUTHORIZED.code:
        // The server closes the socket next (1008 or 1003); retrying with the same token is pointless.
        rejected = true;
        emit({ type: 'device:rejected', deviceId, code: RESPONSE_CODES.UNAUTHORIZED.code, content: message.content });
        return;
      case RESPONSE_CODES.ACTUATION.code:
        stats.actuations++;
        emit({ type: 'device:actuation', deviceId, receivedAt: new Date(), message: message as ActuationMessage });
        if (ack !== 'none' && typeof message.id === 'string') {
          ws.send(JSON.stringify({ type: 'ack', id: message.id, ...ACK_ANSWERS[ack] }));
          stats.acksSent++;
          emit({ type: 'device:ack-sent', deviceId, id: message.id, statusCode: ACK_ANSWERS[ack].statusCode });
        }
        return;
      default:
        emit({ type: 'device:server-message', deviceId, message });
    }
  }

  function startPinging(ws: WebSocket): void {
    if (pingIntervalMs <= 0) return;
    awaitingPong = false;
    pingTimer = setInterval(() => {
      if (awaitingPong) {
        // No PONG for a whole interval: the server or the network is gone.
        ws.terminate();
        return;
      }
      awaitingPong = true;
      ws.send(JSON.stringify({ type: 'ping' }));
    }, pingIntervalMs);
  }

  function socketOnClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== socket) return;
    clearTimeout(authTimer);
    clearInterval(pingTimer);
    socket = undefined;
    if (state === STOPPED || stopped) {
      emit({ type: 'device:disconnected', deviceId, code, reason, reconnectInMs: null });
      return;
    }
    if (rejected) {
      emit({ type: 'device:disconnected', deviceId, code, reason, reconnectInMs: null });
      return stopWith(new Error(`device ${deviceId}: the server refused the token`));
    }
    const delay = backoffDelayMs(failedAttempts, options.backoff);
    failedAttempts++;
    state = WAITING;
    emit({ type: 'device:disconnected', deviceId, code, reason, reconnectInMs: delay });
    reconnectTimer = setTimeout(connect, delay);
  }

  function stopWith(err: Error): void {
    state = STOPPED;
    clearTimeout(reconnectTimer);
    for (const waiter of waiters) waiter.reject(err);
    waiters = [];
  }

  connect();

  return {
    deviceId,
    get state() {
      return state;
    },
    stats,
    authenticated() {
      if (state === AUTHENTICATED) return Promise.resolve();
      if (state === STOPPED) return Promise.reject(new Error(`device ${deviceId} is stopped`));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        stopWith(new Error(`device ${deviceId} was stopped`));
        const ws = socket;
        if (!ws || ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(1000, 'device stopped');
        // A server that does not complete the closing handshake is cut off.
        setTimeout(() => ws.terminate(), 2_000).unref();
      });
      return stopped;
    },
  };
}

export interface DeviceFleetOptions extends Omit<SimulatedDeviceOptions, 'deviceId'> {
  deviceIds: readonly string[];
  /** First connections are spread at random over this time, as a fleet powering up. (Default: min(devices × 5, 2 000)) */
  spreadMs?: number;
}

/** `<prefix>-1` … `<prefix>-<count>`. */
export function numberedDeviceIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`);
}

export interface DeviceFleet {
  readonly devices: readonly SimulatedDevice[];
  /** Resolves once every device has authenticated; rejects if one stops first. */
  authenticated(): Promise<void>;
  stop(): Promise<void>;
}

/** Many simulated devices from one process. */
export function startDeviceFleet(options: DeviceFleetOptions): DeviceFleet {
  const { deviceIds, spreadMs = Math.min(deviceIds.length * 5, 2_000), ...deviceOptions } = options;
  const devices: SimulatedDevice[] = [];
  const pending = new Map<NodeJS.Timeout, () => void>();
  const starts: Promise<void>[] = [];
  for (const deviceId of deviceIds) {
    starts.push(
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(timer);
          devices.push(makeSimulatedDevice({ ...deviceOptions, deviceId }));
          resolve();
        }, deviceIds.length === 1 ? 0 : Math.random() * spreadMs);
        pending.set(timer, resolve);
      }),
    );
  }
  let stopped = false;
  return {
    devices,
    async authenticated() {
      await Promise.all(starts);
      if (stopped) throw new Error('the fleet was stopped');
      await Promise.all(devices.map((d) => d.authenticated()));
    },
    async stop() {
      stopped = true;
      for (const [timer, resolve] of pending) {
        clearTimeout(timer);
        resolve();
      }
      pending.clear();
      await Promise.all(devices.map((d) => d.stop()));
    },
  };
}
