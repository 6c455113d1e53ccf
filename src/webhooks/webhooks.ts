/**
 * The webhooks part, built once by `buildApp`: the REST routes and (after `start()`)
 * this instance's sender. `nudge()` is for `iotws_events` notifications.
 */
import type { Router } from 'express';
import type client from 'prom-client';
import type { Pool } from '../db/pool.js';
import { webhookRoutes } from '../http/routes/webhooks.js';
import type { Logger } from '../logger.js';
import { makeWebhookMetrics } from './metrics.js';
import { startWebhookSender, type WebhookSender, type WebhookSettings } from './sender.js';

export interface Webhooks {
  router: Router;
  start(): void;
  /** New events (a NOTIFY on `iotws_events`): look for endpoints to send to. */
  nudge(): void;
  stop(): Promise<void>;
}

export function makeWebhooks(options: { pool: Pool; logger: Logger; instanceId: string; settings: WebhookSettings; registry: client.Registry }): Webhooks {
  const { pool, logger, instanceId, settings } = options;
  const metrics = makeWebhookMetrics(options.registry, pool);
  let sender: WebhookSender | undefined;
  const router = webhookRoutes({ pool, settings, changed: () => sender?.nudge() });
  return {
    router,
    start() {
      sender ??= startWebhookSender({ pool, logger, instanceId, settings, onResult: metrics.countResult });
    },
    nudge: () => sender?.nudge(),
    async stop() {
      await sender?.stop();
      sender = undefined;
    },
  };
}
