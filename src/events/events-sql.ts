/** Statements on the change feed's tables (`event_rows`, `event_batches`, `event_sequencer`: migration 0019), one function each. */
import type pg from 'pg';
import { namedStatement } from '../db/named-statement.js';
import { filterSql, type EventFilter } from './filter.js';
import { STORED_ACTUATION_COLUMNS, storedEventData, type StoredEventColumns } from './stored-event.js';
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
  /** `sequenceAndReadEvents` asked to read: the events this pass numbered, in id order. */
  events?: FeedEvent[];
}

/** Prepared (named), as the readers below: every instance runs a pass every `EVENTS_SEQUENCER_INTERVAL_MS`. */
const SEQUENCE_EVENTS = namedStatement('events_sequence', 'select * from sequence_events($1)');

/** One pass of `sequence_events` (migration 0019): committed rows get the next ids. Runs in its own transaction (a pool query). */
export async function sequenceEvents(db: Queryable, limit: number): Promise<SequencingPass> {
  const { rows } = await db.query<{ sequenced: number; last_id: string; max_lag_seconds: number | null }>({ ...SEQUENCE_EVENTS, values: [limit] });
  const row = rows[0];
  if (!row) return { locked: false, sequenced: 0, lastId: 0, maxLagSeconds: null };
  return { locked: true, sequenced: row.sequenced, lastId: Number(row.last_id), maxLagSeconds: row.max_lag_seconds };
}

const SEQUENCE_AND_READ_EVENTS = namedStatement(
  'events_sequence_read',
  `select sequenced, last_id, max_lag_seconds, id, type, at, data, device_id as "deviceId", account_id as "accountId", ${STORED_ACTUATION_COLUMNS}
     from sequence_and_read_events($1, $2)`,
);

/**
 * One pass (migration 0027: `sequence_events`' pass and, with `read`, the rows it numbered,
 * read by position in the same statement), so the instance that made the pass fans them out
 * without reading them again. Resolves once the pass's transaction committed (a pool query).
 */
export async function sequenceAndReadEvents(db: Queryable, limit: number, read: boolean): Promise<SequencingPass> {
  const { rows } = await db.query<EventRow & { sequenced: number; last_id: string; max_lag_seconds: number | null }>({
    ...SEQUENCE_AND_READ_EVENTS,
    values: [limit, read],
  });
  const row = rows[0];
  if (!row) return { locked: false, sequenced: 0, lastId: 0, maxLagSeconds: null };
  const pass = { locked: true, sequenced: row.sequenced, lastId: Number(row.last_id), maxLagSeconds: row.max_lag_seconds };
  return read ? { ...pass, events: rows.filter((r) => r.id !== null).map(feedEvent) } : pass;
}

type EventRow = StoredEventColumns & { id: string | null; at: Date; accountId: string | null };

function feedEvent(r: EventRow): FeedEvent {
  return { id: Number(r.id), type: r.type, at: r.at, data: storedEventData(r), deviceId: r.deviceId, accountId: r.accountId };
}

/** The newest id and the oldest one still kept (`oldest` = newest + 1 when none is kept). */
export async function eventBounds(db: Queryable): Promise<{ newest: number; oldest: number }> {
  const { rows } = await db.query<{ newest: string; oldest: string }>(
    `select s.last_id as newest, coalesce((select min(first_id) from event_batches), s.last_id + 1) as oldest from event_sequencer s`,
  );
  return { newest: Number(rows[0]!.newest), oldest: Number(rows[0]!.oldest) };
}

export interface EventPage {
  /** The events of the ids read that pass the filter, in id order. */
  events: FeedEvent[];
  /** The last id read (`after` when there was none): the next page starts after it. */
  scannedTo: number;
}

/**
 * The events with ids in (after, after + window], up to `upTo` when given and up to the
 * newest, that pass `filter`. A window of ids, not of matches: a filtered page can be
 * empty, and the reader goes on from `scannedTo`. (Ids have no index but the batches'
 * primary key: the rows of a window are read and filtered, see migration 0019.)
 */
export async function readEvents(db: Queryable, after: number, upTo: number | null, filter: EventFilter, window: number): Promise<EventPage> {
  const conditions = filterSql(filter, 4);
  // Prepared (named): the instance's live read runs at every sequencing pass. The text
  // depends only on which filters are set (their values are parameters): one statement per shape.
  const statement = namedStatement(
    'events_read',
    `select s.last_id as newest, e.id, e.type, e.at, e.data, e.device_id as "deviceId", e.account_id as "accountId", ${STORED_ACTUATION_COLUMNS}
       from event_sequencer s
       left join lateral (
         select * from events_after($1, $2, $3) e where true ${conditions.where.map((c) => `and ${c}`).join(' ')}
       ) e on true
      order by e.id`,
  );
  const { rows } = await db.query<EventRow & { newest: string }>({
    ...statement,
    values: [after, upTo, window, ...conditions.params],
  });
  const newest = Number(rows[0]!.newest);
  const scannedTo = Math.max(after, Math.min(after + window, upTo ?? newest, newest));
  const events = rows.filter((r) => r.id !== null).map(feedEvent);
  return { events, scannedTo };
}

/**
 * Retention: deletes up to `batchSize` of the oldest events whose time is before
 * `cutoff` (`delete_events_before`, migration 0019). The oldest ids go first, so what is
 * kept is always a contiguous range of ids (the 410 of GET /v1/events relies on it); an
 * event with an older `at` behind a newer one waits for the next pass. 0 also when
 * another instance's pass holds the lock.
 */
export async function deleteEventsBefore(db: Queryable, cutoff: Date, batchSize: number): Promise<number> {
  const { rows } = await db.query<{ deleted: number }>('select delete_events_before($1, $2) as deleted', [cutoff, batchSize]);
  return rows[0]!.deleted;
}
