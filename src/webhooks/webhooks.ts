/**
 * The webhooks part, built once by `buildApp`: the REST routes and (after `start()`)
 * this instance's sender. `nudge()` is for `iotws_events` notifications.
 */
import { pino } from 'pino';
import type { RouteRegistrar } from '../http/request-context.js';
import type client from 'prom-client';
import type { LogLevel } from '../config/config.js';
import type { Pool, PoolOptions } from '../db/pool.js';
import { webhookRoutes } from '../http/routes/webhooks.js';
import type { Logger } from '../logger.js';
import { makeWebhookMetrics } from './metrics.js';
import { makeSecretBox } from './secret-box.js';
import { startWebhookSender, type WebhookSender, type WebhookSettings } from './sender.js';
import { startWebhookSenderThread } from './sender-thread.js';

export interface Webhooks {
  /** Its REST routes, added to the API by `app.ts`. */
  routes: RouteRegistrar;
  start(): void;
  /** New events (a NOTIFY on `iotws_events`): look for endpoints to send to. */
  nudge(): void;
  stop(): Promise<void>;
}

export interface WebhooksOptions {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  settings: WebhookSettings;
  registry: client.Registry;
  /** 32 bytes that seal secrets at rest (`WEBHOOK_SECRET_KEY`); undefined: stored as given. */
  secretKey: Buffer | undefined;
  /** Run the sender in a worker thread with a pool of its own (`WEBHOOK_SENDER_THREAD`); undefined: in this thread, on `pool`. */
  thread?: { pool: PoolOptions; logLevel: LogLevel; nice: number };
}

/** The stream `logger` writes to (children share it): the thread's lines join the same log. */
function destinationOf(logger: Logger): (line: string) => void {
  const stream = (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym]!;
  return (line) => stream.write(line);
}

export function makeWebhooks(options: WebhooksOptions): Webhooks {
  const { pool, logger, instanceId, settings } = options;
  const metrics = makeWebhookMetrics(options.registry, pool);
  const secrets = makeSecretBox(options.secretKey);
  let sender: WebhookSender | undefined;
  const routes = webhookRoutes({ pool, settings, secrets, changed: () => sender?.nudge() });
  return {
    routes,
    start() {
      if (sender) return;
      const { thread } = options;
      sender = thread
        ? startWebhookSenderThread({ ...thread, logger, writeLog: destinationOf(logger), instanceId, settings, secretKey: options.secretKey, onResult: metrics.countResult })
        : startWebhookSender({ pool, logger, instanceId, settings, secrets, onResult: metrics.countResult });
    },
    nudge: () => sender?.nudge(),
    async stop() {
      await sender?.stop();
      sender = undefined;
    },
  };
}
