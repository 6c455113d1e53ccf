/**
 * Retention against a real PostgreSQL: what goes, what stays, in batches, one
 * instance at a time. Each guard was shown to fail without its mechanism (status
 * filter, cutoff, latest-session rule, advisory lock, batch limit, RETENTION_DAYS=0
 * guard, superseded_by guard each removed in turn, run, restored).
 */
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { fillHistory } from '../../bench/lib/fill-history.js';
import { RETENTION_LOCK_KEY, retentionPass, startRetention, uuidV7Floor } from '../../src/db/retention.js';
import { lastRuns } from '../../src/jobs/schedules-sql.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';

const DAY = 86_400_000;
let db: TestDatabase;

beforeEach(async () => {
  await db?.drop();
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

let seq = 0;
/** One actuation row, created `ageDays` ago, finished `finishedDaysAgo` ago (or not). */
async function actuation(status: string, ageDays: number, finishedDaysAgo: number | null, extra: { supersededBy?: string } = {}): Promise<string> {
  const created = new Date(Date.now() - ageDays * DAY);
  const id = uuidv7({ msecs: created.getTime() });
  await db.pool.query(
    `insert into actuations (id, device_id, seq, status, gateway_id, component_id, command, source, created_at, completed_at, superseded_by, history)
     values ($1, 'r-1', $2, $3, 'r-1', 'c', 'x', '{"kind":"rest","caller":"t","requestId":"r"}', $4, $5, $6,
             jsonb_build_array(jsonb_build_object('status', 'queued', 'at', $4::timestamptz)))`,
    [id, ++seq, status, created, finishedDaysAgo === null ? null : new Date(Date.now() - finishedDaysAgo * DAY), extra.supersededBy ?? null],
  );
  return id;
}

async function session(deviceId: string, ageDays: number, closedDaysAgo: number | null): Promise<number> {
  const { rows } = await db.pool.query<{ id: number }>(
    `insert into device_sessions (device_id, instance_id, connected_at, last_seen_at, disconnected_at, close_code)
     values ($1, 'i', $2, $2, $3, $4) returning id`,
    [deviceId, new Date(Date.now() - ageDays * DAY), closedDaysAgo === null ? null : new Date(Date.now() - closedDaysAgo * DAY), closedDaysAgo === null ? null : 1000],
  );
  return rows[0]!.id;
}

async function ids(table: 'actuations' | 'device_sessions'): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(`select id::text from ${table} order by id`);
  return rows.map((r) => r.id);
}

const pass = (retentionDays: number, batchSize = 1_000, onBatch?: (table: string, deleted: number) => void) =>
  retentionPass(db.pool, { retentionDays, batchSize, pauseMs: 0, onBatch });

describe('retention', () => {
  it('deletes final actuations finished before the cutoff, never queued or sent ones, and keeps device_counters', async () => {
    await db.pool.query(`insert into device_counters (device_id, last_seq) values ('r-1', 100)`);
    const oldFinal = [];
    for (const status of ['acked', 'failed', 'expired', 'timed_out', 'cancelled', 'superseded']) oldFinal.push(await actuation(status, 40, 39));
    const kept = [
      await actuation('queued', 40, null),
      await actuation('sent', 40, null),
      // Never a row that is not final, even one with a completed_at (the status decides, not the time).
      await actuation('queued', 40, 39),
      await actuation('sent', 40, 39),
      await actuation('acked', 40, 10), // created long ago, finished recently: kept for its retention period
      await actuation('acked', 5, 5),
      await actuation('queued', 1, null),
    ];
    const result = await pass(30);
    expect(result).toMatchObject({ ran: true, actuations: oldFinal.length });
    expect(await ids('actuations')).toEqual([...kept].sort());
    const counters = await db.pool.query(`select last_seq from device_counters where device_id = 'r-1'`);
    expect(counters.rows[0].last_seq).toBe(100);
  });

  it('deletes closed sessions before the cutoff, never open ones, and keeps each device its latest session', async () => {
    const oldClosed = await session('s-1', 50, 49);
    const openOld = await session('s-2', 50, null);
    const latestOfS1 = await session('s-1', 45, 44); // old and closed, but s-1's latest: s-1 stays known
    const oldClosedS3 = await session('s-3', 48, 47);
    const recent = await session('s-3', 2, 1);
    // Open is never deleted, even with a later row for the device (the open/closed state decides, not the order).
    const openWithLater = await session('s-4', 50, null);
    const laterOfS4 = await session('s-4', 49, 48);
    const result = await pass(30);
    expect(result.sessions).toBe(2);
    expect(await ids('device_sessions')).toEqual([openOld, latestOfS1, recent, openWithLater, laterOfS4].map(String));
    expect([oldClosed, oldClosedS3].every((id) => id > 0)).toBe(true);
  });

  it('works in bounded batches', async () => {
    for (let i = 0; i < 25; i++) await actuation('acked', 40, 39);
    for (let i = 0; i < 12; i++) await session(`b-${i % 3}`, 40, 39);
    const batches: number[] = [];
    const result = await pass(30, 4, (_table, deleted) => batches.push(deleted));
    expect(result.actuations).toBe(25);
    expect(result.sessions).toBe(9); // 3 devices keep their latest
    expect(Math.max(...batches)).toBeLessThanOrEqual(4);
    expect(result.batches).toBeGreaterThanOrEqual(Math.ceil(25 / 4) + Math.ceil(12 / 4));
  });

  it('RETENTION_DAYS=0 deletes nothing', async () => {
    await actuation('acked', 400, 399);
    await session('z-1', 400, 399);
    await session('z-1', 300, 299);
    expect(await pass(0)).toMatchObject({ ran: false, actuations: 0, sessions: 0 });
    expect(await ids('actuations')).toHaveLength(1);
    expect(await ids('device_sessions')).toHaveLength(2);
    // And startRetention with 0 never runs a pass.
    const r = startRetention({ pool: db.pool, logger: makeLogger({ level: 'silent' }), retentionDays: 0, batchSize: 10, pauseMs: 0, intervalMs: 20 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    await r.stop();
    expect(await ids('actuations')).toHaveLength(1);
  });

  it('runs on one instance at a time: a pass finds the lock held and deletes nothing', async () => {
    await actuation('acked', 40, 39);
    const other = new pg.Client(db.url);
    await other.connect();
    try {
      await other.query('select pg_advisory_lock($1)', [RETENTION_LOCK_KEY]);
      expect(await pass(30)).toMatchObject({ ran: false, actuations: 0 });
      expect(await ids('actuations')).toHaveLength(1);
      await other.query('select pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]);
      expect(await pass(30)).toMatchObject({ ran: true, actuations: 1 });
    } finally {
      await other.end();
    }
  });

  it('keeps the chain of cause readable: an actuation a kept one was superseded by stays', async () => {
    const newer = await actuation('acked', 40, 39);
    const olderInSamePass = await actuation('superseded', 41, 40, { supersededBy: newer });
    // A kept actuation (finished recently) naming an old one: the old one must stay.
    const oldTarget = await actuation('acked', 60, 59);
    const keptReferrer = await actuation('superseded', 61, 5, { supersededBy: oldTarget });
    // A chain cut by the kept end: w (kept) was superseded by x, x by y; x and y are old.
    const y = await actuation('acked', 70, 69);
    const x = await actuation('superseded', 71, 70, { supersededBy: y });
    const w = await actuation('superseded', 72, 3, { supersededBy: x });
    // In one batch x and y are both finished, but x must stay for w, so y must stay for x
    // (deleting y would also fail on the foreign key).
    const result = await pass(30, 1_000);
    expect(result.actuations).toBe(2);
    expect(await ids('actuations')).toEqual([oldTarget, keptReferrer, x, y, w].sort());
    // Across batch boundaries too.
    expect(await pass(30, 2)).toMatchObject({ actuations: 0 });
    expect([newer, olderInSamePass]).toHaveLength(2);
    // Readable: the kept one's supersededBy still resolves.
    const { rows } = await db.pool.query(`select b.id::text from actuations a join actuations b on b.id = a.superseded_by where a.id = $1`, [keptReferrer]);
    expect(rows).toEqual([{ id: oldTarget }]);
  });

  it('JOBS_RETENTION_DAYS deletes finished jobs (with their targets, in bounded batches) older than the cutoff; a schedule still reads its runs', async () => {
    const job = async (state: string, finishedDaysAgo: number | null, targets: number, extra: { finalized?: boolean; scheduleId?: string } = {}) => {
      const id = uuidv7();
      await db.pool.query(
        `insert into jobs (id, name, state, target, actuation, start_at, created_by, schedule_id, finished_at, finalized)
         values ($1, 'j', $2, '{"kind":"deviceIds","count":1}', '{}', now() - interval '40 days', '{"kind":"rest","caller":"t","requestId":"r"}',
                 $3, $4, $5)`,
        [id, state, extra.scheduleId ?? null, finishedDaysAgo === null ? null : new Date(Date.now() - finishedDaysAgo * DAY), extra.finalized ?? true],
      );
      await db.pool.query(`insert into job_targets (job_id, device_id, released_at) select $1, 'd-' || g, now() from generate_series(1, $2) g`, [id, targets]);
      return id;
    };
    const scheduleId = uuidv7();
    await db.pool.query(
      `insert into schedules (id, name, cron, timezone, job, misfire_grace_seconds, created_by, decided_until)
       values ($1, 's', '0 2 * * *', 'UTC', '{}', 300, '{"kind":"rest","caller":"t","requestId":"r"}', now())`,
      [scheduleId],
    );
    const oldCompleted = await job('completed', 40, 25, { scheduleId });
    await db.pool.query(`insert into schedule_runs (schedule_id, occurrence, outcome, job_id, decided_by) values ($1, now() - interval '40 days', 'fired', $2, 'i')`, [scheduleId, oldCompleted]);
    const oldCancelled = await job('cancelled', 35, 3);
    const oldAborted = await job('aborted', 35, 3);
    // Kept: finished recently; cancelled but its last sweep not done; still running or scheduled (never finished).
    const recent = await job('completed', 5, 3);
    const unswept = await job('cancelled', 40, 3, { finalized: false });
    const running = await job('running', null, 3);
    const scheduled = await job('scheduled', null, 0);
    const batches: [string, number][] = [];
    const first = await retentionPass(db.pool, { retentionDays: 0, jobsRetentionDays: 30, batchSize: 10, pauseMs: 0, onBatch: (t, n) => batches.push([t, n]) });
    expect(first).toMatchObject({ ran: true, jobs: 3, actuations: 0 });
    // 31 target rows at 10 a batch: at least four batches, none deleting more than 10 target rows.
    expect(first.batches).toBeGreaterThanOrEqual(4);
    expect(batches.every(([t]) => t === 'jobs')).toBe(true);
    const { rows } = await db.pool.query<{ id: string }>('select id from jobs order by id');
    expect(rows.map((r) => r.id).sort()).toEqual([recent, unswept, running, scheduled].sort());
    const left = await db.pool.query<{ job_id: string; n: number }>('select job_id, count(*)::int as n from job_targets group by job_id');
    expect(left.rows.map((r) => r.job_id).sort()).toEqual([recent, unswept, running].sort());
    expect(left.rows.every((r) => r.n === 3)).toBe(true);
    for (const gone of [oldCompleted, oldCancelled, oldAborted]) expect(rows.map((r) => r.id)).not.toContain(gone);
    // The schedule's run naming the deleted job stays; the job's state reads null.
    const runs = await lastRuns(db.pool, scheduleId, 10);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ outcome: 'fired', jobId: oldCompleted, jobState: null });
    // JOBS_RETENTION_DAYS=0 (or unset) deletes no job.
    await db.pool.query(`update jobs set finished_at = now() - interval '400 days', state = 'completed' where id = $1`, [recent]);
    expect(await retentionPass(db.pool, { retentionDays: 30, jobsRetentionDays: 0, batchSize: 10, pauseMs: 0 })).toMatchObject({ jobs: 0 });
    expect(await retentionPass(db.pool, { retentionDays: 30, batchSize: 10, pauseMs: 0 })).toMatchObject({ jobs: 0 });
    expect((await db.pool.query('select 1 from jobs where id = $1', [recent])).rowCount).toBe(1);
  });

  it('startRetention deletes on its interval', async () => {
    await actuation('acked', 40, 39);
    const deleted: number[] = [];
    const r = startRetention({ pool: db.pool, logger: makeLogger({ level: 'silent' }), retentionDays: 30, batchSize: 10, pauseMs: 0, intervalMs: 20, onDeleted: (_t, n) => deleted.push(n) });
    try {
      expect(await eventually(() => ids('actuations'), (rows) => rows.length === 0)).toEqual([]);
      expect(deleted).toEqual([1]);
    } finally {
      await r.stop();
    }
  });

  it('clears history made by fillHistory up to the cutoff, and posts continue each device\'s seq', async () => {
    const filled = await fillHistory(db.pool, { actuations: 6_000, sessions: 3_000, devices: 50, days: 60, chunkSize: 2_500, skipVacuum: true });
    expect(filled).toMatchObject({ actuations: 6_000, sessions: 3_000 });
    const before = await db.pool.query(`select count(*)::int as n, count(distinct status)::int as statuses, min(id::text) < $1 as v7 from actuations`, [uuidV7Floor(new Date())]);
    expect(before.rows[0]).toEqual({ n: 6_000, statuses: 6, v7: true });
    const counters = await db.pool.query(`select bool_and(c.last_seq = m.max) as ok from device_counters c join (select device_id, max(seq) from actuations group by device_id) m using (device_id)`);
    expect(counters.rows[0].ok).toBe(true);
    const result = await pass(30, 1_000);
    // Half the window is older than 30 days (within a percent: created_at follows row number).
    expect(result.actuations).toBeGreaterThan(2_900);
    expect(result.actuations).toBeLessThan(3_100);
    expect(result.sessions).toBeGreaterThan(1_400);
    const left = await db.pool.query(`select count(*)::int as n from actuations where completed_at < now() - interval '30 days'`);
    expect(left.rows[0].n).toBe(0);
  });
});
