/** The statements of schedules and their runs, one function each. */
import type { Pool, PoolClient } from '../db/pool.js';
import type { JobCause } from './jobs-sql.js';
import type { ScheduledJobBody } from './schemas.js';

export interface ScheduleRow {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  job: ScheduledJobBody;
  enabled: boolean;
  misfireGraceSeconds: number;
  accounts: string[] | null;
  createdBy: JobCause;
  createdAt: Date;
  updatedAt: Date;
  decidedUntil: Date;
  nextOccurrenceAt: Date | null;
}

const COLUMNS = `id, name, cron, timezone, job, enabled, misfire_grace_seconds as "misfireGraceSeconds", accounts,
  created_by as "createdBy", created_at as "createdAt", updated_at as "updatedAt", decided_until as "decidedUntil",
  next_occurrence_at as "nextOccurrenceAt"`;

const VISIBLE = `($2::text[] is null or (accounts is not null and accounts <@ $2))`;

export async function insertSchedule(
  pool: Pool,
  s: Omit<ScheduleRow, 'createdAt' | 'updatedAt'>,
): Promise<ScheduleRow> {
  const { rows } = await pool.query<ScheduleRow>(
    `insert into schedules (id, name, cron, timezone, job, enabled, misfire_grace_seconds, accounts, created_by, decided_until, next_occurrence_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning ${COLUMNS}`,
    [s.id, s.name, s.cron, s.timezone, JSON.stringify(s.job), s.enabled, s.misfireGraceSeconds, s.accounts, JSON.stringify(s.createdBy), s.decidedUntil, s.nextOccurrenceAt],
  );
  return rows[0]!;
}

/** A key limited to accounts sees only schedules created with accounts among its own (null: no limit). */
export async function getSchedule(pool: Pool, id: string, accounts: readonly string[] | null): Promise<ScheduleRow | null> {
  const { rows } = await pool.query<ScheduleRow>(`select ${COLUMNS} from schedules where id = $1 and ${VISIBLE}`, [id, accounts]);
  return rows[0] ?? null;
}

/** At most `limit`, oldest first. */
export async function listSchedules(pool: Pool, accounts: readonly string[] | null, limit: number): Promise<ScheduleRow[]> {
  const { rows } = await pool.query<ScheduleRow>(`select ${COLUMNS} from schedules where $1::int > 0 and ${VISIBLE} order by created_at, id limit $1`, [limit, accounts]);
  return rows;
}

/** Writes the fields; `decidedUntil` null keeps where deciding stands (only a new timing moves it, with `nextOccurrenceAt`). */
export async function updateSchedule(
  pool: Pool,
  id: string,
  accounts: readonly string[] | null,
  s: Pick<ScheduleRow, 'name' | 'cron' | 'timezone' | 'job' | 'enabled' | 'misfireGraceSeconds' | 'nextOccurrenceAt'> & { decidedUntil: Date | null },
): Promise<ScheduleRow | null> {
  const { rows } = await pool.query<ScheduleRow>(
    `update schedules set name = $3, cron = $4, timezone = $5, job = $6, enabled = $7, misfire_grace_seconds = $8,
            decided_until = coalesce($9, decided_until),
            next_occurrence_at = case when $9::timestamptz is null then next_occurrence_at else $10 end, updated_at = now()
      where id = $1 and ${VISIBLE} returning ${COLUMNS}`,
    [id, accounts, s.name, s.cron, s.timezone, JSON.stringify(s.job), s.enabled, s.misfireGraceSeconds, s.decidedUntil, s.nextOccurrenceAt],
  );
  return rows[0] ?? null;
}

export async function deleteSchedule(pool: Pool, id: string, accounts: readonly string[] | null): Promise<boolean> {
  const { rowCount } = await pool.query(`delete from schedules where id = $1 and ${VISIBLE}`, [id, accounts]);
  return rowCount === 1;
}

export interface ScheduleRun {
  occurrence: Date;
  outcome: 'fired' | 'skipped';
  jobId: string | null;
  jobState: string | null;
  decidedAt: Date;
  decidedBy: string;
}

/** The latest decided occurrences, newest first. */
export async function lastRuns(pool: Pool, scheduleId: string, limit: number): Promise<ScheduleRun[]> {
  const { rows } = await pool.query<ScheduleRun>(
    `select r.occurrence, r.outcome, r.job_id as "jobId", j.state as "jobState", r.decided_at as "decidedAt", r.decided_by as "decidedBy"
       from schedule_runs r left join jobs j on j.id = r.job_id
      where r.schedule_id = $1 order by r.occurrence desc limit $2`,
    [scheduleId, limit],
  );
  return rows;
}

/**
 * One schedule with an occurrence due, locked for this transaction (SKIP LOCKED: another
 * instance decides another schedule meanwhile), and the database's clock.
 */
export async function lockDueSchedule(client: PoolClient): Promise<{ schedule: ScheduleRow; now: Date } | null> {
  const { rows } = await client.query<ScheduleRow & { now: Date }>(
    `select ${COLUMNS}, now() as now from schedules
      where enabled and next_occurrence_at <= now()
      order by next_occurrence_at limit 1 for update skip locked`,
  );
  const row = rows[0];
  if (!row) return null;
  const { now, ...schedule } = row;
  return { schedule, now };
}

/**
 * Records the decision on one occurrence; false when it was decided already (the primary
 * key: exactly one decision, so one job, per occurrence whatever the number of instances).
 */
export async function recordRun(client: PoolClient, run: { scheduleId: string; occurrence: Date; outcome: 'fired' | 'skipped'; jobId: string | null; decidedBy: string }): Promise<boolean> {
  const { rowCount } = await client.query(
    `insert into schedule_runs (schedule_id, occurrence, outcome, job_id, decided_by) values ($1, $2, $3, $4, $5) on conflict do nothing`,
    [run.scheduleId, run.occurrence, run.outcome, run.jobId, run.decidedBy],
  );
  return rowCount === 1;
}

/** Moves a schedule past the occurrences just decided. */
export async function advanceSchedule(client: PoolClient, id: string, decidedUntil: Date, nextOccurrenceAt: Date | null): Promise<void> {
  await client.query(`update schedules set decided_until = $2, next_occurrence_at = $3 where id = $1`, [id, decidedUntil, nextOccurrenceAt]);
}
