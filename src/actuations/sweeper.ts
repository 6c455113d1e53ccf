import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import type { Lifecycle } from './lifecycle.js';
import { sweepDeadlines } from './sweep-sql.js';

const SWEEP_BATCH = 5_000;

/**
 * Runs the deadline sweep on an interval (every instance tries; one at a time wins the lock).
 * One sweep at a time; each statement is bounded by the pool's query timeout, so a dead
 * database holds back at most one sweep, and the first sweep after it catches up.
 */
export function startDeadlineSweeper(options: { pool: Pool; logger: Logger; intervalMs: number; lifecycle?: Lifecycle }): { stop(): Promise<void> } {
  const { pool, logger } = options;
  let running: Promise<void> | undefined;
  // During an outage: one warning when sweeps start failing, one line when they work again.
  let failing = 0;
  const timer = setInterval(() => {
    if (running) return;
    running = (async () => {
      // A full batch means more is due: sweep again at once.
      const sweep = () => sweepDeadlines(pool, SWEEP_BATCH, options.lifecycle);
      for (let result = await sweep(); ; result = await sweep()) {
        if (result.expired > 0 || result.timedOut > 0) logger.info({ expired: result.expired, timedOut: result.timedOut }, 'actuations: deadlines swept');
        if (result.expired < SWEEP_BATCH && result.timedOut < SWEEP_BATCH) break;
      }
    })()
      .then(
        () => {
          if (failing > 0) logger.info({ failedSweeps: failing }, 'actuations: deadline sweep works again');
          failing = 0;
        },
        (err: unknown) => {
          if (failing++ === 0) logger.warn({ err }, 'actuations: deadline sweep failed');
          else logger.debug({ err, failedSweeps: failing }, 'actuations: deadline sweep failed');
        },
      )
      .finally(() => (running = undefined));
  }, options.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
