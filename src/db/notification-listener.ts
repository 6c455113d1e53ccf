/**
 * LISTEN on a dedicated connection (a pooled one would be handed to other queries).
 * Notifications are nudges, not the truth: the tables are. So after every
 * (re)connect `onConnected` runs, letting callers re-read what they may have missed.
 * A lost connection is re-established with exponential backoff and jitter.
 */
import pg from 'pg';
import type { Logger } from '../logger.js';

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
}

const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 10_000;

export async function startNotificationListener(options: NotificationListenerOptions): Promise<NotificationListener> {
  const log = options.logger.child({ component: 'listen' });
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  async function connect(): Promise<void> {
    const c = new pg.Client({ connectionString: options.connectionString, ssl: options.ssl || undefined, application_name: 'iot-websocket-server listen' });
    c.on('notification', (n) => options.onNotification(n.channel, n.payload ?? ''));
    c.on('error', (err) => {
      log.warn({ err }, 'listen: connection error');
      lost(c);
    });
    c.on('end', () => lost(c));
    await c.connect();
    for (const channel of options.channels) await c.query(`listen ${pg.escapeIdentifier(channel)}`);
    client = c;
    attempt = 0;
    options.onConnected?.();
  }

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

  await connect();
  return {
    async stop() {
      stopped = true;
      clearTimeout(retryTimer);
      const c = client;
      client = undefined;
      if (c) {
        await c.query('unlisten *').catch(() => undefined);
        await c.end().catch(() => undefined);
      }
    },
  };
}
