import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { sweepDeadlines, type SweepResult } from './sweep-sql.js';

const SWEEP_BATCH = 5_000;

/** Runs the deadline sweep on an interval (every instance tries; one at a time wins the lock). */
export function startDeadlineSweeper(options: { pool: Pool; logger: Logger; intervalMs: number; onSwept?(result: SweepResult): void }): { stop(): Promise<void> } {
  const { pool, logger } = options;
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = (async () => {
      // A full batch means more is due: sweep again at once.
      for (let result = await sweepDeadlines(pool, SWEEP_BATCH); ; result = await sweepDeadlines(pool, SWEEP_BATCH)) {
        options.onSwept?.(result);
        if (result.expired > 0 || result.timedOut > 0) logger.info({ expired: result.expired, timedOut: result.timedOut }, 'actuations: deadlines swept');
        if (result.expired < SWEEP_BATCH && result.timedOut < SWEEP_BATCH) break;
      }
    })()
      .catch((err) => logger.warn({ err }, 'actuations: deadline sweep failed'))
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
