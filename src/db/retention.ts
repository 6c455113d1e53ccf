/**
 * Retention: finished actuations, closed sessions and audit log entries older than
 * `RETENTION_DAYS` are deleted, so that the tables stop growing with history.
 *
 * - Bounded: each batch is one short transaction that looks at `batchSize` rows of the
 *   primary key, in key order, and deletes those that qualify. Actuation ids are
 *   UUIDv7 and session ids an identity, so key order is creation order and a pass
 *   walks from the oldest rows up to the cutoff, keyset-paginated: no index of its own
 *   on the hot path, no rescans within a pass.
 * - Paced: after each batch the pass pauses at least as long as the batch took (and at
 *   least `pauseMs`), so retention holds one connection at most half of the time and
 *   delivery never queues behind it for long.
 * - One at a time: each batch takes a transaction-scoped advisory lock; an instance
 *   that finds it taken ends its pass (another instance is at work).
 *
 * What is kept:
 * - Only final actuations (acked, failed, expired, timed_out, cancelled, superseded)
 *   whose `completed_at` is before the cutoff; queued and sent ones never.
 * - An actuation another kept actuation still names in `superseded_by` is kept until
 *   that one goes too (a superseded actuation always finishes before the one that
 *   superseded it and has the smaller id, so in practice both go in the same pass).
 * - `device_counters` is never touched: it holds each device's last seq, so seq stays
 *   gap-free and is never reused after old actuations are deleted.
 * - Each device's latest session is kept even when closed and old, so a device stays
 *   known to `GET /v1/devices` (one row per device, which is bounded).
 * - DSS events in `dss_event_log` go `DSS_EVENT_LOG_HOURS` after they arrived (by
 *   `received_at`, oldest first), whatever `RETENTION_DAYS` says.
 * - Finished jobs (completed; cancelled or aborted once their last sweep is done) go
 *   `JOBS_RETENTION_DAYS` after they finished (by `finished_at`, oldest first), with their
 *   target rows, at most `batchSize` target rows per batch (a 100,000-device job takes
 *   several); their actuations follow `RETENTION_DAYS` as all others do. A schedule's run
 *   that names a deleted job stays (its `jobState` reads null). Scheduled and running jobs never go.
 * An idempotency key lives as long as its actuation: a key repeated after the
 * actuation was deleted creates a new one (DSS keys name a stream position, which a
 * stream never replays from that far back).
 */
import type { Logger } from '../logger.js';
import type { Pool, PoolClient } from './pool.js';
import { withTransaction } from './pool.js';

/** Any constant works as long as every instance uses the same one. */
export const RETENTION_LOCK_KEY = 0x107580;

const FIRST_PASS_DELAY_MS = 10_000;

export const FINAL_STATUSES = ['acked', 'failed', 'expired', 'timed_out', 'cancelled', 'superseded'] as const;

export interface RetentionOptions {
  /** Rows older than this many days go; 0 keeps everything. */
  retentionDays: number;
  /** DSS events in `dss_event_log` received more than this many hours ago go (DSS_EVENT_LOG_HOURS); 0 or unset: none. */
  eventLogHours?: number;
  /** Jobs finished more than this many days ago go, with their targets (JOBS_RETENTION_DAYS); 0 or unset: none. */
  jobsRetentionDays?: number;
  /** Rows looked at per batch (one statement, one transaction). */
  batchSize: number;
  /** Least pause between batches. */
  pauseMs: number;
}

export interface BatchResult {
  /** False when another instance holds the retention lock: nothing was looked at. */
  locked: boolean;
  /** Rows of the key range looked at. */
  scanned: number;
  deleted: number;
  /** Where the next batch starts (the last key looked at). */
  lastKey: string | number | null;
  /** True when the key range up to the cutoff is exhausted. */
  done: boolean;
}

export interface PassResult {
  /** False when another instance held the lock. */
  ran: boolean;
  actuations: number;
  sessions: number;
  /** Rows of the DSS recent-event log deleted. */
  dssEvents: number;
  /** Audit log entries (migrations/0010). */
  audit: number;
  /** Finished jobs deleted (their target rows with them). */
  jobs: number;
  batches: number;
}

export type RetentionTable = 'actuations' | 'device_sessions' | 'dss_event_log' | 'audit_log' | 'jobs';

/**
 * The smallest UUIDv7 of the millisecond `at`: every actuation created before `at`
 * has a smaller id (ids are made by the server's clock; a skew between it and the
 * database's only delays a row's deletion to a later pass).
 */
export function uuidV7Floor(at: Date): string {
  const hex = Math.max(0, Math.floor(at.getTime())).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

async function lockedBatch<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T | undefined> {
  return withTransaction(pool, async (client) => {
    const lock = await client.query<{ locked: boolean }>('select pg_try_advisory_xact_lock($1) as locked', [RETENTION_LOCK_KEY]);
    if (!lock.rows[0]!.locked) return undefined;
    // A late ack may hold a finished row for a moment; never wait long for it.
    await client.query(`set local lock_timeout = '2s'`);
    return fn(client);
  });
}

/** One batch of finished actuations: ids after `after`, created before `cutoff`. */
export async function deleteFinishedActuations(pool: Pool, cutoff: Date, after: string | null, batchSize: number): Promise<BatchResult> {
  const result = await lockedBatch(pool, async (client) => {
    const { rows } = await client.query<{ scanned: number; deleted: number; last_id: string | null }>(
      `with recursive candidates as (
         select id from actuations
          where id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000') and id < $2::uuid
          order by id limit $3
       ), finished as (
         -- Locked, not skipped: a superseded actuation must go no later than the one that
         -- superseded it, which is in this batch or a later one of the same pass.
         select a.id from actuations a
          where a.id in (select id from candidates)
            and a.status = any ($4::text[]) and a.completed_at < $5
          for update
       ), blocked as (
         -- Rows a kept row still names in superseded_by stay, and so, in turn, do the rows
         -- those name (a chain w -> x -> y with w kept keeps x and y).
         select f.id from finished f
          where exists (select 1 from actuations s where s.superseded_by = f.id and s.id not in (select id from finished))
         union
         select f.id from finished f join actuations s on s.superseded_by = f.id join blocked b on b.id = s.id
       ), doomed as (
         select f.id from finished f where f.id not in (select id from blocked)
       ), deleted as (
         delete from actuations a where a.id in (select id from doomed) returning 1
       )
       select (select count(*)::int from candidates) as scanned,
              (select count(*)::int from deleted) as deleted,
              (select id::text from candidates order by id desc limit 1) as last_id`,
      [after, uuidV7Floor(cutoff), batchSize, FINAL_STATUSES, cutoff],
    );
    return rows[0]!;
  });
  if (!result) return { locked: false, scanned: 0, deleted: 0, lastKey: after, done: true };
  return { locked: true, scanned: result.scanned, deleted: result.deleted, lastKey: result.last_id ?? after, done: result.scanned < batchSize };
}

/** One batch of closed sessions: ids after `after`; each device's latest session stays. */
export async function deleteClosedSessions(pool: Pool, cutoff: Date, after: number | null, batchSize: number): Promise<BatchResult> {
  const result = await lockedBatch(pool, async (client) => {
    const { rows } = await client.query<{ scanned: number; deleted: number; last_id: number | null; last_connected_at: Date | null }>(
      `with candidates as (
         select id, device_id, disconnected_at, connected_at from device_sessions
          where id > coalesce($1::bigint, 0)
          order by id limit $2
       ), doomed as (
         select s.id from device_sessions s
          where s.id in (select id from candidates where disconnected_at < $3)
            and exists (select 1 from device_sessions n where n.device_id = s.device_id and n.id > s.id)
          for update skip locked
       ), deleted as (
         delete from device_sessions s where s.id in (select id from doomed) returning 1
       )
       select (select count(*)::int from candidates) as scanned,
              (select count(*)::int from deleted) as deleted,
              (select max(id) from candidates) as last_id,
              (select max(connected_at) from candidates) as last_connected_at`,
      [after, batchSize, cutoff],
    );
    return rows[0]!;
  });
  if (!result) return { locked: false, scanned: 0, deleted: 0, lastKey: after, done: true };
  // Ids follow connection time: past the first session opened after the cutoff, nothing qualifies.
  const pastCutoff = result.last_connected_at !== null && result.last_connected_at >= cutoff;
  return { locked: true, scanned: result.scanned, deleted: result.deleted, lastKey: result.last_id ?? after, done: result.scanned < batchSize || pastCutoff };
}

/**
 * One batch of the DSS event log: the oldest `batchSize` rows received before `cutoff`
 * (through its `received_at` index; no key to walk, the rows it leaves are all newer).
 */
export async function deleteOldDssEvents(pool: Pool, cutoff: Date, batchSize: number): Promise<BatchResult> {
  const result = await lockedBatch(pool, async (client) => {
    const { rows } = await client.query<{ deleted: number }>(
      `with doomed as (
         select stream_id, seq from dss_event_log where received_at < $1 order by received_at limit $2 for update skip locked
       ), deleted as (
         delete from dss_event_log l using doomed d where l.stream_id = d.stream_id and l.seq = d.seq returning 1
       )
       select count(*)::int as deleted from deleted`,
      [cutoff, batchSize],
    );
    return rows[0]!;
  });
  if (!result) return { locked: false, scanned: 0, deleted: 0, lastKey: null, done: true };
  return { locked: true, scanned: result.deleted, deleted: result.deleted, lastKey: null, done: result.deleted < batchSize };
}

/**
 * One batch of audit entries recorded before the cutoff, oldest first, by their primary
 * key (a UUIDv7 of the entry's time). Each batch deletes what qualifies, so it needs no
 * cursor: the pass ends at the first batch that finds fewer than `batchSize`.
 */
export async function deleteOldAuditEntries(pool: Pool, cutoff: Date, batchSize: number): Promise<BatchResult> {
  const result = await lockedBatch(pool, async (client) => {
    const { rows } = await client.query<{ deleted: number }>(
      `with doomed as (
         select id from audit_log where id < $1::uuid order by id limit $2 for update skip locked
       ), deleted as (
         delete from audit_log a where a.id in (select id from doomed) returning 1
       )
       select count(*)::int as deleted from deleted`,
      [uuidV7Floor(cutoff), batchSize],
    );
    return rows[0]!;
  });
  if (!result) return { locked: false, scanned: 0, deleted: 0, lastKey: null, done: true };
  return { locked: true, scanned: result.deleted, deleted: result.deleted, lastKey: null, done: result.deleted < batchSize };
}

/** Finished jobs whose target rows one batch looks at (their rows, up to `batchSize`, then the emptied jobs). */
const JOBS_PER_BATCH = 100;

/**
 * One batch of finished jobs: of the oldest JOBS_PER_BATCH that finished before the cutoff,
 * up to `batchSize` target rows are deleted, then those jobs that have none left. Two
 * statements in the batch's transaction, so that a job with 100,000 targets is deleted over
 * several short batches, never in one long cascade. `deleted` counts jobs.
 */
export async function deleteFinishedJobs(pool: Pool, cutoff: Date, batchSize: number): Promise<BatchResult> {
  const result = await lockedBatch(pool, async (client) => {
    const doomed = `select id from jobs
                     where finished_at < $1 and (state = 'completed' or (state in ('cancelled', 'aborted') and finalized))
                     order by finished_at limit ${JOBS_PER_BATCH}`;
    const targets = await client.query<{ deleted: number }>(
      `with doomed as (
         select t.job_id, t.device_id from job_targets t where t.job_id in (${doomed}) limit $2
       ), deleted as (
         delete from job_targets t using doomed d where t.job_id = d.job_id and t.device_id = d.device_id returning 1
       )
       select count(*)::int as deleted from deleted`,
      [cutoff, batchSize],
    );
    const jobs = await client.query<{ found: number; deleted: number }>(
      `with doomed as (${doomed} for update skip locked), deleted as (
         delete from jobs j using doomed d
          where j.id = d.id and not exists (select 1 from job_targets t where t.job_id = d.id) returning 1
       )
       select (select count(*)::int from doomed) as found, (select count(*)::int from deleted) as deleted`,
      [cutoff],
    );
    return { targets: targets.rows[0]!.deleted, ...jobs.rows[0]! };
  });
  if (!result) return { locked: false, scanned: 0, deleted: 0, lastKey: null, done: true };
  // Done when this batch emptied every job it found and found fewer than a batch's worth.
  const done = result.targets < batchSize && result.found < JOBS_PER_BATCH;
  return { locked: true, scanned: result.targets + result.found, deleted: result.deleted, lastKey: null, done };
}

/**
 * One pass over every table with one cutoff (the database's clock). Stops early when
 * another instance holds the lock or `shouldStop()` says so.
 */
export async function retentionPass(pool: Pool, options: RetentionOptions & { shouldStop?: () => boolean; onBatch?: (table: RetentionTable, deleted: number) => void }): Promise<PassResult> {
  const pass: PassResult = { ran: true, actuations: 0, sessions: 0, dssEvents: 0, audit: 0, jobs: 0, batches: 0 };
  const eventLogHours = options.eventLogHours ?? 0;
  const jobsRetentionDays = options.jobsRetentionDays ?? 0;
  if (!anythingToDelete(options)) return { ...pass, ran: false };
  const { rows } = await pool.query<{ cutoff: Date; eventCutoff: Date; jobsCutoff: Date }>(
    `select now() - make_interval(days => $1) as cutoff, now() - make_interval(hours => $2) as "eventCutoff",
            now() - make_interval(days => $3) as "jobsCutoff"`,
    [options.retentionDays, eventLogHours, jobsRetentionDays],
  );
  const { cutoff, eventCutoff, jobsCutoff } = rows[0]!;
  const tables: { table: RetentionTable; batch: (after: string | number | null) => Promise<BatchResult> }[] = [];
  if (options.retentionDays > 0) {
    tables.push(
      { table: 'actuations', batch: (after) => deleteFinishedActuations(pool, cutoff, after as string | null, options.batchSize) },
      { table: 'device_sessions', batch: (after) => deleteClosedSessions(pool, cutoff, after as number | null, options.batchSize) },
      { table: 'audit_log', batch: () => deleteOldAuditEntries(pool, cutoff, options.batchSize) },
    );
  }
  if (eventLogHours > 0) tables.push({ table: 'dss_event_log', batch: () => deleteOldDssEvents(pool, eventCutoff, options.batchSize) });
  if (jobsRetentionDays > 0) tables.push({ table: 'jobs', batch: () => deleteFinishedJobs(pool, jobsCutoff, options.batchSize) });
  for (const { table, batch } of tables) {
    let after: string | number | null = null;
    for (;;) {
      if (options.shouldStop?.()) return pass;
      const started = Date.now();
      const result: BatchResult = await batch(after);
      if (!result.locked) return { ...pass, ran: pass.batches > 0 };
      pass.batches++;
      if (table === 'actuations') pass.actuations += result.deleted;
      else if (table === 'device_sessions') pass.sessions += result.deleted;
      else if (table === 'dss_event_log') pass.dssEvents += result.deleted;
      else if (table === 'jobs') pass.jobs += result.deleted;
      else pass.audit += result.deleted;
      if (result.deleted > 0) options.onBatch?.(table, result.deleted);
      if (result.done) break;
      after = result.lastKey;
      await sleep(Math.max(options.pauseMs, Date.now() - started));
    }
  }
  return pass;
}

/** Runs a pass every `intervalMs` (every instance tries; one at a time holds the lock). */
export function startRetention(options: RetentionOptions & { pool: Pool; logger: Logger; intervalMs: number; onDeleted?: (table: RetentionTable, rows: number) => void }): { stop(): Promise<void> } {
  const { pool, logger } = options;
  if (!anythingToDelete(options)) return { stop: async () => undefined };
  let stopped = false;
  let running: Promise<void> | undefined;
  const tick = (): void => {
    if (running || stopped) return;
    running = retentionPass(pool, { ...options, shouldStop: () => stopped, onBatch: options.onDeleted })
      .then((pass) => {
        if (pass.actuations > 0 || pass.sessions > 0 || pass.dssEvents > 0 || pass.audit > 0 || pass.jobs > 0) {
          logger.info({ actuations: pass.actuations, sessions: pass.sessions, dssEvents: pass.dssEvents, audit: pass.audit, jobs: pass.jobs, batches: pass.batches }, 'retention: old rows deleted');
        }
      })
      .catch((err) => logger.warn({ err }, 'retention: pass failed; the next one retries'))
      .finally(() => (running = undefined));
  };
  // The first pass soon after start (not a whole interval later), then every interval.
  const first = setTimeout(tick, Math.min(options.intervalMs, FIRST_PASS_DELAY_MS));
  first.unref();
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
  };
}

function anythingToDelete(options: RetentionOptions): boolean {
  return options.retentionDays > 0 || (options.eventLogHours ?? 0) > 0 || (options.jobsRetentionDays ?? 0) > 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
