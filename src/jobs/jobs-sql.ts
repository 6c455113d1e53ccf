/**
 * The statements of jobs, one function each. A job's state changes in two places only:
 * `startDueJob` (scheduled -> running, with the target snapshot) and `stopJob` (-> completed,
 * cancelled or aborted); both append to the job's timeline.
 */
import { ACTUATION_COLUMNS, type ActuationRecord } from '../actuations/query-sql.js';
import type { ActuationStatus } from '../actuations/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { deviceVisibleSql, type AccountScope } from '../devices/account-scope.js';
import type { JobState } from './schemas.js';

type Queryable = Pool | PoolClient;

/** What created a job: a REST caller, or an occurrence of a schedule. Actuations name it as their job's cause. */
export type JobCause = { kind: 'rest'; caller: string; requestId: string } | { kind: 'schedule'; scheduleId: string; occurrence: string };

/** As stored and shown: the count of listed devices, or the filter resolved when the job starts. */
export type StoredTarget = { kind: 'deviceIds'; count: number } | ({ kind: 'filter' } & TargetFilter);

/** A filter target; `continuous`: devices that match later are targeted too. */
export interface TargetFilter {
  tags?: Record<string, string>;
  accountId?: string;
  online?: boolean;
  continuous?: true;
}

export interface JobRow {
  id: string;
  name: string;
  state: JobState;
  stateReason: string | null;
  target: StoredTarget;
  accounts: string[] | null;
  actuation: Record<string, unknown>;
  maxPerMinute: number | null;
  abortFailedPercent: number | null;
  abortMinCompleted: number | null;
  startAt: Date;
  endAt: Date | null;
  createdBy: JobCause;
  scheduleId: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  targetCount: number | null;
  releasedCount: number;
  leaseOwner: string | null;
  leaseUntil: Date | null;
  timeline: Record<string, unknown>[];
}

const JOB_COLUMNS = `id, name, state, state_reason as "stateReason", target, accounts, actuation, max_per_minute as "maxPerMinute",
  abort_failed_percent as "abortFailedPercent", abort_min_completed as "abortMinCompleted", start_at as "startAt",
  end_at as "endAt", created_by as "createdBy", schedule_id as "scheduleId", created_at as "createdAt", started_at as "startedAt",
  finished_at as "finishedAt", target_count as "targetCount", released_count as "releasedCount",
  lease_owner as "leaseOwner", lease_until as "leaseUntil", timeline`;

export interface NewJob {
  id: string;
  name: string;
  target: StoredTarget;
  /** The listed devices (a `deviceIds` target); stored as rows now. */
  deviceIds: string[] | null;
  accounts: readonly string[] | null;
  actuation: Record<string, unknown>;
  maxPerMinute: number | null;
  abort: { failedPercent: number; minCompleted: number } | null;
  /** null: now (the database's clock). */
  startAt: Date | null;
  /** A continuous target stops growing then; null: never (or not continuous). */
  endAt: Date | null;
  createdBy: JobCause;
  scheduleId: string | null;
}

/** Target rows written per statement. */
const TARGET_INSERT_CHUNK = 10_000;

/** Inserts the job and, for a `deviceIds` target, its target rows (duplicates once); run it inside a transaction. */
export async function insertJob(client: PoolClient, job: NewJob): Promise<JobRow> {
  const { rows } = await client.query<JobRow>(
    `insert into jobs (id, name, target, accounts, actuation, max_per_minute, abort_failed_percent, abort_min_completed,
                       start_at, created_by, schedule_id, end_at, timeline)
     values ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), $10, $11, $12,
             jsonb_build_array(jsonb_build_object('at', now(), 'state', 'scheduled')))
     returning ${JOB_COLUMNS}`,
    [
      job.id,
      job.name,
      JSON.stringify(job.target),
      job.accounts,
      JSON.stringify(job.actuation),
      job.maxPerMinute,
      job.abort?.failedPercent ?? null,
      job.abort?.minCompleted ?? null,
      job.startAt,
      JSON.stringify(job.createdBy),
      job.scheduleId,
      job.endAt,
    ],
  );
  if (job.deviceIds) {
    // In parts, so that each statement stays well within the statement timeout (DATABASE_TIMEOUT_MS) on a loaded machine.
    let inserted = 0;
    for (let i = 0; i < job.deviceIds.length; i += TARGET_INSERT_CHUNK) {
      const part = job.deviceIds.slice(i, i + TARGET_INSERT_CHUNK);
      inserted += (await client.query(`insert into job_targets (job_id, device_id) select $1, unnest($2::text[]) on conflict do nothing`, [job.id, part])).rowCount ?? 0;
    }
    // The stored count is of distinct devices.
    if (inserted !== job.deviceIds.length) {
      const target: StoredTarget = { kind: 'deviceIds', count: inserted };
      await client.query(`update jobs set target = $2 where id = $1`, [job.id, JSON.stringify(target)]);
      rows[0]!.target = target;
    }
  }
  return rows[0]!;
}

/**
 * Adds the registry's devices that match a filter (and the job's accounts) as targets of a
 * job, at most `limit` of them (null: all), by one INSERT … SELECT; a device already a
 * target stays as it is (ON CONFLICT DO NOTHING: still one actuation per device and job).
 * `onlyIfGrowing`: only while the job is running, held by this instance and before its
 * `end_at` (a continuous job's pass). Returns how many were added.
 */
async function insertFilterTargets(
  q: Queryable,
  jobId: string,
  filter: TargetFilter,
  accounts: readonly string[] | null,
  limit: number | null,
  onlyIfGrowing: { instanceId: string } | null,
): Promise<number> {
  const { tags, accountId, online } = filter;
  const { rowCount } = await q.query(
    `insert into job_targets (job_id, device_id)
     select $1, d.device_id from devices d
      where ($2::jsonb is null or d.tags @> $2::jsonb)
        and ($3::text is null or d.account_id = $3)
        and ($4::boolean is null
             or exists (select 1 from device_sessions s where s.device_id = d.device_id and s.disconnected_at is null) = $4)
        and ($5::text[] is null or d.account_id = any($5))
        and ($6::int is null or not exists (select 1 from job_targets t where t.job_id = $1 and t.device_id = d.device_id))
        and ($7::text is null or exists (select 1 from jobs j where j.id = $1 and j.state = 'running' and j.lease_owner = $7
                                                              and (j.end_at is null or j.end_at > now())))
      limit $6
     on conflict do nothing`,
    [jobId, tags === undefined ? null : JSON.stringify(tags), accountId ?? null, online ?? null, accounts, limit, onlyIfGrowing?.instanceId ?? null],
  );
  return rowCount ?? 0;
}

/**
 * Starts one job that is due, if any (SKIP LOCKED: instances start different jobs): a filter
 * is resolved into target rows by one INSERT … SELECT on the registry (a snapshot, unless
 * the filter is continuous: then `addContinuousTargets` adds later matches), and targets
 * outside the job's accounts are refused. Returns the started job's id.
 */
export async function startDueJob(client: PoolClient): Promise<string | null> {
  const { rows } = await client.query<{ id: string; target: StoredTarget; accounts: string[] | null }>(
    `select id, target, accounts from jobs where state = 'scheduled' and start_at <= now() order by start_at limit 1 for update skip locked`,
  );
  const job = rows[0];
  if (!job) return null;
  if (job.target.kind === 'filter') {
    await insertFilterTargets(client, job.id, job.target, job.accounts, null, null);
  } else if (job.accounts !== null) {
    // A key limited to accounts targets only their devices (the registry's account, when the job starts).
    await client.query(
      `update job_targets t set released_at = now(), refused = 'NOT_IN_ACCOUNTS'
        where t.job_id = $1 and t.released_at is null
          and not exists (select 1 from devices d where d.device_id = t.device_id and d.account_id = any($2))`,
      [job.id, job.accounts],
    );
  }
  await client.query(
    `update jobs j set state = 'running', started_at = now(), target_count = c.total, released_count = c.decided,
            timeline = j.timeline || jsonb_build_array(jsonb_build_object('at', now(), 'state', 'running', 'targets', c.total, 'refused', c.decided))
       from (select count(*)::int as total, (count(*) filter (where released_at is not null))::int as decided
               from job_targets where job_id = $1) c
      where j.id = $1`,
    [job.id],
  );
  return job.id;
}

/** Devices a continuous job adds per pass at most; more are added at the next pass. */
export const CONTINUOUS_ADD_LIMIT = 10_000;

/**
 * One pass of a continuous job held by this instance: adds the devices that match its
 * filter now and are not yet targets (at most CONTINUOUS_ADD_LIMIT), and counts them in
 * `target_count`. Nothing is added once the job is past its `end_at` (by the database clock;
 * `ended` says so), no longer running, or no longer held by this instance.
 */
export async function addContinuousTargets(pool: Pool, jobId: string, instanceId: string, filter: TargetFilter, accounts: readonly string[] | null): Promise<{ added: number; ended: boolean }> {
  const added = await insertFilterTargets(pool, jobId, filter, accounts, CONTINUOUS_ADD_LIMIT, { instanceId });
  const { rows } = await pool.query<{ ended: boolean }>(
    `with counted as (update jobs set target_count = coalesce(target_count, 0) + $2 where id = $1 and $2::int > 0)
     select coalesce(end_at <= now(), false) as ended from jobs where id = $1`,
    [jobId, added],
  );
  return { added, ended: rows[0]?.ended ?? false };
}

/** Ends a job that is in one of `from`; false when it was not (already ended, or not started). */
export async function stopJob(q: Queryable, id: string, from: readonly JobState[], to: 'completed' | 'cancelled' | 'aborted', reason: string | null, by: string | null): Promise<boolean> {
  const { rowCount } = await q.query(
    `update jobs set state = $3, state_reason = $4, finished_at = now(),
            timeline = timeline || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('at', now(), 'state', $3::text, 'reason', $4::text, 'by', $5::text)))
      where id = $1 and state = any($2::text[])`,
    [id, from, to, reason, by],
  );
  return rowCount === 1;
}

/** A job this instance now releases (or finalizes), with what the releaser needs. */
export interface LeasedJob {
  id: string;
  state: JobState;
  /** A filter target: continuous ones grow at each pass. */
  target: StoredTarget;
  accounts: string[] | null;
  actuation: Record<string, unknown>;
  createdBy: JobCause;
  maxPerMinute: number | null;
  abortFailedPercent: number | null;
  abortMinCompleted: number | null;
  releasedCount: number;
}

/**
 * Takes up to `max` jobs no instance holds (never leased, lease run out, or released):
 * running ones, and cancelled or aborted ones whose queued actuations are still to sweep.
 * SKIP LOCKED: two instances never take the same job. A takeover is on the timeline.
 */
export async function acquireJobLeases(pool: Pool, instanceId: string, leaseMs: number, max: number): Promise<LeasedJob[]> {
  const { rows } = await pool.query<LeasedJob>(
    `update jobs j set lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000),
            timeline = j.timeline || jsonb_build_array(jsonb_build_object('at', now(), 'event', 'leased', 'instance', $1::text))
      where j.id in (select id from jobs
                      where (state = 'running' or (state in ('cancelled', 'aborted') and not finalized))
                        and (lease_until is null or lease_until < now())
                      order by id limit $3 for update skip locked)
     returning j.id, j.state, j.target, j.accounts, j.actuation, j.created_by as "createdBy", j.max_per_minute as "maxPerMinute",
               j.abort_failed_percent as "abortFailedPercent", j.abort_min_completed as "abortMinCompleted",
               j.released_count as "releasedCount"`,
    [instanceId, leaseMs, max],
  );
  return rows;
}

/** Renews this instance's leases; returns the jobs it still holds with their state (a job missing was taken over). */
export async function renewJobLeases(pool: Pool, instanceId: string, leaseMs: number, ids: string[]): Promise<Map<string, JobState>> {
  const { rows } = await pool.query<{ id: string; state: JobState }>(
    `update jobs set lease_until = now() + make_interval(secs => $3::double precision / 1000)
      where id = any($2::uuid[]) and lease_owner = $1 and lease_until >= now()
     returning id, state`,
    [instanceId, ids, leaseMs],
  );
  return new Map(rows.map((r) => [r.id, r.state]));
}

/** Lets go of jobs (shutdown, or a job this instance is done with): another instance may take them at once. */
export async function releaseJobLeases(pool: Pool, instanceId: string, ids: string[]): Promise<void> {
  await pool.query(`update jobs set lease_owner = null, lease_until = null where id = any($2::uuid[]) and lease_owner = $1`, [instanceId, ids]);
}

/**
 * The next targets to release, in device order, only while the job is running and this
 * instance's lease holds (so a cancel, an abort or a takeover stops releasing at the next page).
 */
/**
 * Up to `limit` targets not yet released, in device order; with `after`, only devices after it
 * (a cursor: an unpaced job reads its next page while the previous one commits, and the
 * cursor keeps the targets in flight out of it). Nothing once the job is not running here.
 */
export async function pendingTargets(pool: Pool, jobId: string, instanceId: string, limit: number, after: string | null = null): Promise<string[]> {
  const { rows } = await pool.query<{ device_id: string }>(
    `select t.device_id from job_targets t
      where t.job_id = $1 and t.released_at is null${after === null ? '' : ' and t.device_id > $4'}
        and exists (select 1 from jobs j where j.id = $1 and j.state = 'running' and j.lease_owner = $2 and j.lease_until >= now())
      order by t.device_id limit $3`,
    after === null ? [jobId, instanceId, limit] : [jobId, instanceId, limit, after],
  );
  return rows.map((r) => r.device_id);
}

export interface Release {
  deviceId: string;
  actuationId: string | null;
  refused: string | null;
}

/** Records released targets (each once: a repeat after a takeover changes nothing) and counts them on the job. */
export async function markReleased(pool: Pool, jobId: string, releases: Release[]): Promise<void> {
  if (releases.length === 0) return;
  await pool.query(
    `with marked as (
       update job_targets t set released_at = now(), actuation_id = u."actuationId", refused = u.refused
         from jsonb_to_recordset($2::jsonb) as u("deviceId" text, "actuationId" uuid, refused text)
        where t.job_id = $1 and t.device_id = u."deviceId" and t.released_at is null
       returning 1
     )
     update jobs set released_count = released_count + (select count(*) from marked) where id = $1`,
    // One JSON text, not three text[] parameters: pg builds array literals element by element
    // in JavaScript, about a tenth of what a release page allocated (README "Jobs against the bulk endpoint").
    [jobId, JSON.stringify(releases)],
  );
}

/** Marks a stopped job's last sweep done and lets go of it. */
export async function markFinalized(pool: Pool, jobId: string, instanceId: string): Promise<void> {
  await pool.query(`update jobs set finalized = true, lease_owner = null, lease_until = null where id = $1 and lease_owner = $2`, [jobId, instanceId]);
}

export const JOB_COUNT_KEYS = ['notReleased', 'refused', 'queued', 'sent', 'acked', 'failed', 'timed_out', 'expired', 'cancelled', 'superseded', 'deleted'] as const;
export type JobCounts = Record<(typeof JOB_COUNT_KEYS)[number], number>;

/** Targets by their actuation's status; `notReleased`, `refused` (no actuation made) and `deleted` (removed by retention) besides. */
export async function jobCounts(q: Queryable, jobId: string): Promise<JobCounts> {
  const { rows } = await q.query<{ key: string; n: number }>(
    `select coalesce(a.status, case when t.released_at is null then 'notReleased' when t.refused is not null then 'refused' else 'deleted' end) as key,
            count(*)::int as n
       from job_targets t left join actuations a on a.id = t.actuation_id
      where t.job_id = $1
      group by 1`,
    [jobId],
  );
  const counts = Object.fromEntries(JOB_COUNT_KEYS.map((k) => [k, 0])) as JobCounts;
  for (const row of rows) counts[row.key as keyof JobCounts] = row.n;
  return counts;
}

/** Final statuses: the actuation will not change any more. */
export const FINAL_STATUSES: readonly ActuationStatus[] = ['acked', 'failed', 'timed_out', 'expired', 'cancelled', 'superseded'];

/**
 * A key limited to accounts sees only jobs created with accounts among its own (null: no limit).
 */
export async function getJob(pool: Pool, id: string, accounts: readonly string[] | null): Promise<JobRow | null> {
  const { rows } = await pool.query<JobRow>(`select ${JOB_COLUMNS} from jobs where id = $1 and ($2::text[] is null or (accounts is not null and accounts <@ $2))`, [id, accounts]);
  return rows[0] ?? null;
}

/** Newest first; `beforeId` is the previous page's last id (ids are time-ordered). */
export async function listJobs(pool: Pool, options: { state: JobState | null; limit: number; beforeId: string | null; accounts: readonly string[] | null }): Promise<JobRow[]> {
  const { rows } = await pool.query<JobRow>(
    `select ${JOB_COLUMNS} from jobs
      where ($1::text is null or state = $1) and ($2::uuid is null or id < $2)
        and ($3::text[] is null or (accounts is not null and accounts <@ $3))
      order by id desc limit $4`,
    [options.state, options.beforeId, options.accounts, options.limit],
  );
  return rows;
}

/**
 * A job's actuations in device order (`afterDeviceId` is the previous page's last device),
 * optionally of one status. `scope` (the caller's accounts) also hides those of
 * devices that have since moved out of them, as every actuation query does (account-scope.ts).
 */
export async function listJobActuations(
  pool: Pool,
  jobId: string,
  options: { status: ActuationStatus | null; limit: number; afterDeviceId: string | null },
  scope: AccountScope,
): Promise<ActuationRecord[]> {
  const params: unknown[] = [jobId, options.status, options.afterDeviceId, options.limit];
  const { rows } = await pool.query<ActuationRecord>(
    `select ${ACTUATION_COLUMNS} from (
       select a.* from job_targets t join actuations a on a.id = t.actuation_id
        where t.job_id = $1 and ($2::text is null or a.status = $2) and ($3::text is null or t.device_id > $3)
          and ${deviceVisibleSql('t.device_id', scope, params)}
        order by t.device_id limit $4
     ) actuations order by device_id`,
    params,
  );
  return rows;
}
