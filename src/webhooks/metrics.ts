/**
 * Webhook metrics, registered on the app's registry: deliveries by result (counted by
 * this instance's sender) and each endpoint's backlog (matching events past its cursor,
 * read from the database when scraped, so every instance shows the same).
 */
import client from 'prom-client';
import type { Pool } from '../db/pool.js';
import { backlogs } from './delivery-sql.js';
import type { DeliveryResult } from './sender.js';

/** The backlog gauge counts at most this many events per endpoint (a scrape must stay cheap). */
export const BACKLOG_CAP = 10_000;

export interface WebhookMetrics {
  countResult(result: DeliveryResult, count?: number): void;
}

export function makeWebhookMetrics(registry: client.Registry, pool: Pool): WebhookMetrics {
  const registers = [registry];
  const deliveries = new client.Counter({
    name: 'iotws_webhook_deliveries_total',
    help: 'Webhook delivery attempts by result: delivered (2xx), retried, failed (given up after WEBHOOK_MAX_AGE_HOURS), gone (410: endpoint disabled)',
    labelNames: ['result'],
    registers,
  });
  for (const result of ['delivered', 'retried', 'failed', 'gone'] as const) deliveries.inc({ result }, 0);
  new client.Gauge({
    name: 'iotws_webhook_backlog',
    help: `Events waiting for each webhook endpoint (matching, past its cursor; at most ${BACKLOG_CAP})`,
    labelNames: ['webhook', 'enabled'],
    registers,
    async collect() {
      this.reset();
      for (const row of await backlogs(pool, BACKLOG_CAP)) this.set({ webhook: row.id, enabled: String(row.enabled) }, row.backlog);
    },
  });
  return { countResult: (result, count = 1) => deliveries.inc({ result }, count) };
}
