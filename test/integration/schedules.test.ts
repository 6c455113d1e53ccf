/**
 * Schedules on two in-process instances sharing one database: each occurrence creates
 * exactly one job across both; occurrences missed (while "every instance was down": the
 * schedule's decided point moved back in the database) fire within the grace and are
 * recorded as skipped beyond it; the REST surface. (Daylight saving: test/unit/occurrences.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retentionPass } from '../../src/db/retention.js';
import { nextOccurrence } from '../../src/jobs/occurrences.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  const env = { JOBS_POLL_MS: '100', JOBS_LEASE_MS: '2000' };
  [a, b] = await Promise.all([startTestServer(db, { ...env, INSTANCE_ID: 'sched-a' }), startTestServer(db, { ...env, INSTANCE_ID: 'sched-b' })]);
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await db?.drop();
});

// No device has this tag: each job completes at once, with no targets.
const job = { name: 'nightly', target: { tags: { fleet: 'none' } }, actuation: { componentId: 'c', command: 'OFF', params: [] } };

interface Schedule {
  id: string;
  enabled: boolean;
  nextOccurrences: string[];
  lastRuns: { occurrence: string; outcome: string; jobId: string | null; jobState: string | null }[];
}

async function createSchedule(body: Record<string, unknown>): Promise<Schedule> {
  const res = await a.api('/v1/schedules', { method: 'POST', json: { name: 's', cron: '* * * * *', job, ...body } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Schedule;
}

/** As if every instance had been down for `seconds`: the schedule was last decided then. */
async function backdate(id: string, seconds: number): Promise<void> {
  const { rows } = await db.pool.query<{ at: Date }>(`select now() - make_interval(secs => $1) as at`, [seconds]);
  const at = rows[0]!.at;
  await db.pool.query('update schedules set decided_until = $2, next_occurrence_at = $3 where id = $1', [id, at, nextOccurrence('* * * * *', 'UTC', at)]);
}

interface Run {
  occurrence: Date;
  outcome: string;
  decided_at: Date;
  decided_by: string;
  job_id: string | null;
}

/** Waits until every occurrence up to now is decided. */
async function decided(id: string): Promise<Run[]> {
  await eventually(
    async () => (await db.pool.query<{ caught_up: boolean }>('select next_occurrence_at > now() as caught_up from schedules where id = $1', [id])).rows[0]!.caught_up,
    (caughtUp) => caughtUp,
    20_000,
  );
  const { rows } = await db.pool.query<Run>('select occurrence, outcome, decided_at, decided_by, job_id from schedule_runs where schedule_id = $1 order by occurrence', [id]);
  return rows;
}

describe('schedules', () => {
  it('create exactly one job per occurrence across two instances', async () => {
    const schedule = await createSchedule({ misfireGraceSeconds: 3600 });
    // One occurrence in the window was decided already, as by an instance that committed first: it gets no second job.
    const { rows: taken } = await db.pool.query<{ occurrence: Date }>(
      `insert into schedule_runs (schedule_id, occurrence, outcome, decided_by)
       values ($1, date_trunc('minute', now()) - interval '15 minutes', 'fired', 'elsewhere') returning occurrence`,
      [schedule.id],
    );
    await backdate(schedule.id, 20 * 60);
    const runs = await decided(schedule.id);
    expect(runs.length).toBeGreaterThanOrEqual(19);
    expect(runs.every((r) => r.outcome === 'fired')).toBe(true);
    const ours = runs.filter((r) => r.occurrence.getTime() !== taken[0]!.occurrence.getTime());
    expect(ours).toHaveLength(runs.length - 1);
    const { rows: jobs } = await db.pool.query<{ occurrence: string; n: number }>(
      `select created_by->>'occurrence' as occurrence, count(*)::int as n from jobs where schedule_id = $1 group by 1 order by 1`,
      [schedule.id],
    );
    // One job per occurrence this deployment decided, none for the one decided elsewhere. The guard is the run's
    // primary key (schedule, occurrence) with the row lock: checked that without the key's conflict handling the
    // decision fails for good here (the schedule never catches up); the two instances racing for one schedule
    // cannot be forced into the same instant from a test.
    expect(jobs.map((j) => j.n)).toEqual(ours.map(() => 1));
    expect(jobs.map((j) => new Date(j.occurrence).getTime())).toEqual(ours.map((r) => r.occurrence.getTime()));
    expect(runs.find((r) => r.occurrence.getTime() === taken[0]!.occurrence.getTime())).toMatchObject({ decided_by: 'elsewhere', job_id: null });
    const shown = await eventually(
      async () => (await (await b.api(`/v1/schedules/${schedule.id}`)).json()) as Schedule,
      (s) => s.lastRuns.length === 10 && s.lastRuns.every((r) => r.jobId === null || r.jobState === 'completed'),
    );
    expect(shown.lastRuns[0]!.occurrence).toBe(runs.at(-1)!.occurrence.toISOString());
    const created = (await (await a.api(`/v1/jobs/${shown.lastRuns[0]!.jobId}`)).json()) as { createdBy: unknown; scheduleId: string };
    expect(created).toMatchObject({ scheduleId: schedule.id, createdBy: { kind: 'schedule', scheduleId: schedule.id, occurrence: shown.lastRuns[0]!.occurrence } });
  });

  it('still answers GET /v1/schedules/:id once retention (JOBS_RETENTION_DAYS) deleted the jobs its runs name', async () => {
    const schedule = await createSchedule({ misfireGraceSeconds: 3600 });
    await backdate(schedule.id, 3 * 60);
    const runs = await decided(schedule.id);
    expect(runs.filter((r) => r.outcome === 'fired').length).toBeGreaterThanOrEqual(2);
    await eventually(
      async () => (await (await a.api(`/v1/schedules/${schedule.id}`)).json()) as Schedule,
      (s) => s.lastRuns.length === runs.length && s.lastRuns.every((r) => r.jobState === 'completed'),
    );
    // As if they had finished 40 days ago: a pass with JOBS_RETENTION_DAYS=30 deletes them.
    await db.pool.query(`update jobs set finished_at = now() - interval '40 days' where schedule_id = $1`, [schedule.id]);
    const pass = await retentionPass(db.pool, { retentionDays: 0, jobsRetentionDays: 30, batchSize: 1_000, pauseMs: 0 });
    expect(pass.jobs).toBeGreaterThanOrEqual(runs.length);
    const res = await b.api(`/v1/schedules/${schedule.id}`);
    expect(res.status).toBe(200);
    const shown = (await res.json()) as Schedule;
    expect(shown.lastRuns).toHaveLength(runs.length);
    for (const run of shown.lastRuns) expect(run).toMatchObject({ outcome: 'fired', jobId: expect.any(String), jobState: null });
    expect((await a.api(`/v1/jobs/${shown.lastRuns[0]!.jobId}`)).status).toBe(404);
  });

  it('fire missed occurrences within misfireGraceSeconds once on recovery, and record older ones as skipped', async () => {
    const schedule = await createSchedule({ misfireGraceSeconds: 150 });
    await backdate(schedule.id, 10 * 60);
    const runs = await decided(schedule.id);
    expect(runs.length).toBeGreaterThanOrEqual(9);
    for (const run of runs) {
      const lateSeconds = (run.decided_at.getTime() - run.occurrence.getTime()) / 1000;
      expect({ lateSeconds, outcome: run.outcome }).toEqual({ lateSeconds, outcome: lateSeconds > 150 ? 'skipped' : 'fired' });
    }
    const fired = runs.filter((r) => r.outcome === 'fired');
    expect(fired.length).toBeGreaterThanOrEqual(2);
    expect(runs.filter((r) => r.outcome === 'skipped').length).toBeGreaterThanOrEqual(7);
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from jobs where schedule_id = $1', [schedule.id]);
    expect(rows[0]!.n).toBe(fired.length);
  });

  it('show the next five occurrences in the time zone; PATCH, disable, DELETE; refuse bad cron and zones', async () => {
    const schedule = await createSchedule({ cron: '0 2 * * *', timezone: 'Europe/Berlin', enabled: true });
    expect(schedule.nextOccurrences).toHaveLength(5);
    for (const at of schedule.nextOccurrences) expect(['01:00', '00:00']).toContain(at.slice(11, 16)); // 02:00 CET / CEST
    const disabled = await a.api(`/v1/schedules/${schedule.id}`, { method: 'PATCH', json: { enabled: false } });
    expect(((await disabled.json()) as Schedule).nextOccurrences).toEqual([]);
    const listed = (await (await b.api('/v1/schedules')).json()) as { items: Schedule[] };
    expect(listed.items.find((s) => s.id === schedule.id)?.enabled).toBe(false);
    for (const [body, message] of [
      [{ cron: '61 * * * *' }, /^cron: is not a valid cron expression/],
      [{ cron: '* * * * * *' }, /^cron: must have five fields/],
      [{ timezone: 'Mars/Olympus' }, /^timezone: is not an IANA time zone/],
      [{ misfireGraceSeconds: -1 }, /^misfireGraceSeconds: /],
      [{}, /give at least one of/],
    ] as const) {
      const res = await a.api(`/v1/schedules/${schedule.id}`, { method: 'PATCH', json: body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    const bad = await a.api('/v1/schedules', { method: 'POST', json: { name: 's', cron: '* * * * *', job: { ...job, startAt: '2026-01-01T00:00:00Z' } } });
    expect(bad.status).toBe(400);
    expect((await a.api(`/v1/schedules/${schedule.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await a.api(`/v1/schedules/${schedule.id}`)).status).toBe(404);
    expect((await a.api(`/v1/schedules/${schedule.id}`, { method: 'DELETE' })).status).toBe(404);
  });
});
