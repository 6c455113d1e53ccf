/**
 * Events older than `EVENTS_RETENTION_HOURS` are deleted, oldest ids first, so the
 * feed keeps a contiguous range of ids and `GET /v1/events` can tell a client whose
 * position is older than that range (410, with the oldest id kept). Every instance
 * runs a pass every `intervalMs`; two passes at once delete the same oldest rows, one
 * waiting on the other's row locks, and nothing else: no lock of its own needed.
 * Batches of `batchSize` rows, each its own statement, with a pause between.
 */
import type { Logger } from '../logger.js';
import type { Pool } from '../db/pool.js';
import { deleteEventsBefore } from './events-sql.js';

export interface EventRetentionOptions {
  pool: Pool;
  logger: Logger;
  /** 0 keeps every event. */
  retentionHours: number;
  intervalMs: number;
  batchSize: number;
  pauseMs: number;
  onDeleted?(rows: number): void;
}

/** One pass: deletes every event older than the retention, in batches. Returns how many. */
export async function eventRetentionPass(options: Omit<EventRetentionOptions, 'logger' | 'intervalMs'> & { shouldStop?: () => boolean }): Promise<number> {
  if (options.retentionHours <= 0) return 0;
  const { rows } = await options.pool.query<{ cutoff: Date }>('select now() - make_interval(hours => $1) as cutoff', [options.retentionHours]);
  const cutoff = rows[0]!.cutoff;
  let total = 0;
  for (;;) {
    if (options.shouldStop?.()) return total;
    const deleted = await deleteEventsBefore(options.pool, cutoff, options.batchSize);
    total += deleted;
    if (deleted > 0) options.onDeleted?.(deleted);
    if (deleted < options.batchSize) return total;
    await new Promise((resolve) => setTimeout(resolve, options.pauseMs).unref());
  }
}

export function startEventRetention(options: EventRetentionOptions): { stop(): Promise<void> } {
  if (options.retentionHours <= 0) return { stop: async () => undefined };
  let stopped = false;
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running || stopped) return;
    running = eventRetentionPass({ ...options, shouldStop: () => stopped })
      .then((deleted) => {
        if (deleted > 0) options.logger.info({ events: deleted }, 'retention: old events deleted');
      })
      .catch((err) => options.logger.warn({ err }, 'retention: events pass failed; the next one retries'))
      .finally(() => (running = undefined));
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  const first = setTimeout(tick, Math.min(options.intervalMs, 10_000));
  first.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      clearTimeout(first);
      await running;
    },
  };
}
