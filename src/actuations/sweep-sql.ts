/**
 * Deadlines, enforced by the database: queued or sent actuations past `expires_at`
 * become `expired`; sent ones past `ack_deadline_at` become `timed_out`. One instance
 * sweeps at a time (transaction-scoped advisory lock); each sweep is bounded.
 */
import { withTransaction, type Pool } from '../db/pool.js';

/** Any constant works as long as every instance uses the same one. */
const SWEEP_LOCK_KEY = 0x10757f;

export interface SweepResult {
  swept: boolean;
  expired: number;
  timedOut: number;
  /** Source kind of each swept actuation, by new status (metrics). */
  sources: { status: 'expired' | 'timed_out'; kind: string }[];
}

export async function sweepDeadlines(pool: Pool, batchSize: number): Promise<SweepResult> {
  return withTransaction(pool, async (client) => {
    const lock = await client.query<{ locked: boolean }>('select pg_try_advisory_xact_lock($1) as locked', [SWEEP_LOCK_KEY]);
    if (!lock.rows[0]!.locked) return { swept: false, expired: 0, timedOut: 0, sources: [] };
    const timedOut = await client.query<{ kind: string }>(
      `update actuations a
          set status = 'timed_out', completed_at = now(),
              history = a.history || jsonb_build_array(jsonb_build_object('status', 'timed_out', 'at', now()))
        where a.id in (select id from actuations
                        where status = 'sent' and ack_deadline_at is not null and ack_deadline_at <= now()
                        order by ack_deadline_at limit $1 for update skip locked)
       returning a.source->>'kind' as kind`,
      [batchSize],
    );
    const expired = await client.query<{ kind: string }>(
      `update actuations a
          set status = 'expired', completed_at = now(),
              history = a.history || jsonb_build_array(jsonb_build_object('status', 'expired', 'at', now()))
        where a.id in (select id from actuations
                        where status in ('queued', 'sent') and expires_at is not null and expires_at <= now()
                        order by expires_at limit $1 for update skip locked)
       returning a.source->>'kind' as kind`,
      [batchSize],
    );
    return {
      swept: true,
      expired: expired.rows.length,
      timedOut: timedOut.rows.length,
      sources: [
        ...timedOut.rows.map((r) => ({ status: 'timed_out' as const, kind: r.kind })),
        ...expired.rows.map((r) => ({ status: 'expired' as const, kind: r.kind })),
      ],
    };
  });
}
