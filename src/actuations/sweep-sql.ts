/**
 * Deadlines, enforced by the database: queued or sent actuations past `expires_at`
 * become `expired`; sent ones past `ack_deadline_at` become `timed_out` (the statements:
 * transitions-sql.ts). One instance sweeps at a time (transaction-scoped advisory lock);
 * each sweep is bounded. Its transitions are reported to the lifecycle after its commit.
 */
import { withTransaction, type Pool } from '../db/pool.js';
import type { ActuationEvent, Lifecycle } from './lifecycle.js';
import { expireOverdue, timeOutOverdue } from './transitions-sql.js';

/** Any constant works as long as every instance uses the same one. */
const SWEEP_LOCK_KEY = 0x10757f;

export interface SweepResult {
  swept: boolean;
  expired: number;
  timedOut: number;
}

export async function sweepDeadlines(pool: Pool, batchSize: number, lifecycle?: Lifecycle): Promise<SweepResult> {
  const events: ActuationEvent[] = [];
  const result = await withTransaction(pool, async (client) => {
    const lock = await client.query<{ locked: boolean }>('select pg_try_advisory_xact_lock($1) as locked', [SWEEP_LOCK_KEY]);
    if (!lock.rows[0]!.locked) return { swept: false, expired: 0, timedOut: 0 };
    const timedOut = await timeOutOverdue(client, batchSize);
    const expired = await expireOverdue(client, batchSize);
    events.push(...timedOut, ...expired);
    return { swept: true, expired: expired.length, timedOut: timedOut.length };
  });
  // Committed (withTransaction resolved): a rolled-back sweep rejected above and reports nothing.
  lifecycle?.committed(events);
  return result;
}
