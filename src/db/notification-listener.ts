/**
 * LISTEN on a dedicated connection (a pooled one would be handed to other queries).
 * Notifications are nudges, not the truth: the tables are. So after every
 * (re)connect `onConnected` runs, letting callers re-read what they may have missed.
 * A lost connection is re-established with exponential backoff and jitter.
 *
 * A LISTEN connection only receives, so a silently dead one (a blackhole, a NAT that
 * forgot it, a proxy that stopped forwarding) would never error: nothing is ever sent
 * that could fail. So every `timeoutMs` it runs `select 1`, bounded by `timeoutMs`;
 * a probe that fails or does not answer replaces the connection.
 */
import pg from 'pg';
import type { Logger } from '../logger.js';
import { connectionLimits, DEFAULT_DATABASE_TIMEOUT_MS } from './pool.js';

export interface NotificationListener {
  stop(): Promise<void>;
}

export interface NotificationListenerOptions {
  connectionString: string;
  ssl?: false | { rejectUnauthorized: boolean; ca?: string };
  channels: string[];
  logger: Logger;
  onNotification(channel: string, payload: string): void;
  onConnected?(): void;
  /** Bounds connect and each query, and is the probe interval (`DATABASE_TIMEOUT_MS`). (Default: 5 000) */
  timeoutMs?: number;
}

const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 10_000;

export async function startNotificationListener(options: NotificationListenerOptions): Promise<NotificationListener> {
  const log = options.logger.child({ component: 'listen' });
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_DATABASE_TIMEOUT_MS;

  async function connect(): Promise<void> {
    const c = new pg.Client({
      connectionString: options.connectionString,
      ssl: options.ssl || undefined,
      application_name: 'iot-websocket-server listen',
      ...connectionLimits(timeoutMs),
    });
    c.on('notification', (n) => options.onNotification(n.channel, n.payload ?? ''));
    c.on('error', (err) => {
      log.warn({ err }, 'listen: connection error');
      lost(c);
    });
    c.on('end', () => lost(c));
    try {
      await c.connect();
      for (const channel of options.channels) await c.query(`listen ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      // A half-made connection (connected, LISTEN timed out) must not linger.
      await c.end().catch(() => undefined);
      throw err;
    }
    client = c;
    attempt = 0;
    options.onConnected?.();
  }

  let probing = false;
  const probeTimer = setInterval(() => {
    const c = client;
    if (!c || probing) return;
    probing = true;
    c.query('select 1')
      .catch((err: unknown) => {
        log.warn({ err }, 'listen: connection did not answer its probe; replacing it');
        lost(c);
      })
      .finally(() => (probing = false));
  }, timeoutMs);
  probeTimer.unref();

  function lost(c: pg.Client): void {
    if (stopped || client !== c) return;
    client = undefined;
    c.end().catch(() => undefined);
    retry();
  }

  function retry(): void {
    if (stopped || retryTimer) return;
    const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    log.info({ delayMs: Math.round(delay) }, 'listen: reconnecting');
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      connect().catch((err) => {
        log.warn({ err }, 'listen: reconnect failed');
        retry();
      });
    }, delay);
    retryTimer.unref();
  }

  try {
    await connect();
  } catch (err) {
    clearInterval(probeTimer);
    throw err;
  }
  return {
    async stop() {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(probeTimer);
      const c = client;
      client = undefined;
      if (c) {
        await c.query('unlisten *').catch(() => undefined);
        await c.end().catch(() => undefined);
      }
    },
  };
}
