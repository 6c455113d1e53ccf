/** Statements on `events`, `event_outbox` and `event_sequencer` (migrations 0011, 0012), one function each. */
import type pg from 'pg';
import { filterSql, type EventFilter } from './filter.js';
import type { FeedEvent } from './types.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface SequencingPass {
  /** False when another instance holds the sequencer's lock: nothing was done here. */
  locked: boolean;
  sequenced: number;
  /** The last id handed out (after this pass). */
  lastId: number;
  /** Age of the oldest event moved, from its transaction's start to now (null when none moved). */
  maxLagSeconds: number | null;
}

/** One pass of `sequence_events` (migration 0012): committed outbox rows become events. */
export async function sequenceEvents(db: Queryable, limit: number): Promise<SequencingPass> {
  const { rows } = await db.query<{ sequenced: number; last_id: string; max_lag_seconds: number | null }>('select * from sequence_events($1)', [limit]);
  const row = rows[0];
  if (!row) return { locked: false, sequenced: 0, lastId: 0, maxLagSeconds: null };
  return { locked: true, sequenced: row.sequenced, lastId: Number(row.last_id), maxLagSeconds: row.max_lag_seconds };
}

/** The newest id and the oldest one still kept (`oldest` = newest + 1 when none is kept). */
export async function eventBounds(db: Queryable): Promise<{ newest: number; oldest: number }> {
  const { rows } = await db.query<{ newest: string; oldest: string }>(
    `select s.last_id as newest, coalesce((select min(id) from events), s.last_id + 1) as oldest from event_sequencer s`,
  );
  return { newest: Number(rows[0]!.newest), oldest: Number(rows[0]!.oldest) };
}

/** Events after `after` (up to `upTo` when given) that pass `filter`, in id order. */
export async function readEvents(db: Queryable, after: number, upTo: number | null, filter: EventFilter, limit: number): Promise<FeedEvent[]> {
  const conditions = filterSql(filter, 4);
  const { rows } = await db.query<FeedEvent & { id: string }>(
    `select id, type, at, data, device_id as "deviceId", account_id as "accountId" from events
      where id > $1 and ($2::bigint is null or id <= $2) ${conditions.where.map((c) => `and ${c}`).join(' ')}
      order by id limit $3`,
    [after, upTo, limit, ...conditions.params],
  );
  return rows.map((r) => ({ ...r, id: Number(r.id) }));
}

/**
 * Retention: deletes up to `batchSize` of the oldest events whose time is before
 * `cutoff`. The oldest ids go first, so what is kept is always a contiguous range of
 * ids (the 410 of GET /v1/events relies on it); an event with an older `at` behind a
 * newer one waits for the next pass.
 */
export async function deleteEventsBefore(db: Queryable, cutoff: Date, batchSize: number): Promise<number> {
  const { rowCount } = await db.query(
    `with head as (select id, at from events order by id limit $2),
          kept as (select min(id) as id from head where at >= $1)
     delete from events where id in (select id from head where id < coalesce((select id from kept), 9223372036854775807))`,
    [cutoff, batchSize],
  );
  return rowCount ?? 0;
}
