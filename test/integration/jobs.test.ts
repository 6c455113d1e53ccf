/**
 * Jobs on one in-process server and a real PostgreSQL: a job over connected acking devices
 * completes with one actuation each; pacing; the abort threshold; cancel mid-rollout; a
 * filter target resolved as a snapshot; a continuous filter target; validation. (Several instances and SIGKILL:
 * jobs-takeover.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { numberedDeviceIds, startDeviceFleet, type DeviceFleet } from '../../src/simulator/device-simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { JOBS_POLL_MS: '200', JOBS_LEASE_MS: '2000' });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const actuation = { componentId: 'defrost', command: 'OFF', params: [{ name: 'mode', value: 'off' }] };

interface Job {
  id: string;
  state: string;
  stateReason: string | null;
  targets: number | null;
  released: number;
  counts: Record<string, number>;
  timeline: { at: string; state?: string; event?: string; instance?: string }[];
}

async function createJob(body: Record<string, unknown>): Promise<Job> {
  const res = await server.api('/v1/jobs', { method: 'POST', json: { name: 'test job', actuation, ...body } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Job;
}

async function getJob(id: string): Promise<Job> {
  const res = await server.api(`/v1/jobs/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Job;
}

function fleet(ids: string[], ack: 'ok' | 'fail'): DeviceFleet {
  return startDeviceFleet({ url: server.wsUrl, deviceIds: ids, token: (id) => mint(id), ack, pingIntervalMs: 0, spreadMs: 200 });
}

/** Release times of a job's targets, in order (ms). */
async function releaseTimes(jobId: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ at: Date }>('select released_at as at from job_targets where job_id = $1 and released_at is not null order by released_at', [jobId]);
  return rows.map((r) => r.at.getTime());
}

describe('jobs', () => {
  it('releases one actuation per listed device, through the submit path, and completes once all are acked', async () => {
    const ids = numberedDeviceIds('jobok', 30);
    const devices = fleet(ids, 'ok');
    await devices.authenticated();
    try {
      // A duplicate in the list counts once.
      const created = await createJob({ target: { deviceIds: [...ids, ids[0]] } });
      expect(created.state).toBe('scheduled');
      expect(created.counts.notReleased).toBe(30);
      const done = await eventually(() => getJob(created.id), (j) => j.state === 'completed', 30_000);
      expect(done.counts).toMatchObject({ acked: 30, notReleased: 0, queued: 0, sent: 0 });
      expect(done.timeline.map((e) => e.state ?? e.event)).toEqual(['scheduled', 'running', 'leased', 'completed']);
      // Every device got exactly one, each naming the job and what created it.
      expect(devices.devices.map((d) => d.stats.actuations).sort()).toEqual(ids.map(() => 1));
      const page = (await (await server.api(`/v1/jobs/${created.id}/actuations?limit=500`)).json()) as {
        items: { deviceId: string; idempotencyKey: string; status: string; source: { kind: string; jobId: string; cause: { kind: string } } }[];
      };
      expect(page.items).toHaveLength(30);
      for (const item of page.items) {
        expect(item.idempotencyKey).toBe(`job:${created.id}:${item.deviceId}`);
        expect(item.source).toMatchObject({ kind: 'job', jobId: created.id, cause: { kind: 'rest', caller: 'tester' } });
      }
      const acked = (await (await server.api(`/v1/jobs/${created.id}/actuations?status=acked&limit=10`)).json()) as { items: unknown[]; nextCursor: string };
      expect(acked.items).toHaveLength(10);
      const next = (await (await server.api(`/v1/jobs/${created.id}/actuations?status=acked&limit=25&cursor=${acked.nextCursor}`)).json()) as { items: unknown[]; nextCursor: null };
      expect(next.items).toHaveLength(20);
      expect(next.nextCursor).toBeNull();
      const list = (await (await server.api('/v1/jobs?state=completed')).json()) as { items: { id: string }[] };
      expect(list.items.map((j) => j.id)).toContain(created.id);
    } finally {
      await devices.stop();
    }
  });

  it('spreads releases evenly at maxPerMinute (measured over a short job, tolerant bounds)', async () => {
    // 40 devices at 600/min = 10/s: about 4 s. Not connected: the actuations stay queued.
    const ids = numberedDeviceIds('paced', 40);
    const job = await createJob({ target: { deviceIds: ids }, rollout: { maxPerMinute: 600 } });
    await eventually(() => getJob(job.id), (j) => j.released === 40, 30_000);
    const times = await releaseTimes(job.id);
    expect(times).toHaveLength(40);
    const seconds = (times.at(-1)! - times[0]!) / 1000;
    // Never faster than the rate (a page may hold at most one second's worth): 39 releases after the first take ≥ ~2.9 s.
    // Without pacing the whole job goes out in one page, within milliseconds (checked: with the pace ignored in the releaser this measured 0 s).
    expect(seconds).toBeGreaterThan(2.9);
    // No burst: any one-second window holds at most a second's worth plus one page's rounding (10 + 10).
    for (let i = 0; i < times.length; i++) {
      const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(20);
    }
    // Not slower than asked is not checked here: a loop that stalls (the suite's other files load
    // the same two cores and database) does not catch up, by design (no burst after a stall), so
    // under load the job takes longer (CI once measured 3.3/s). The pace's accuracy is measured
    // by the jobs bench instead (6,000/min within ±5%: README, Benchmarks); here only that every
    // target went out within the 30 s the wait above allows.
    await server.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
  });

  it('aborts past the failure threshold, with the reason, and cancels what is still queued', async () => {
    const ids = numberedDeviceIds('jobfail', 40);
    const devices = fleet(ids, 'fail');
    await devices.authenticated();
    try {
      // 120/min = 2/s: the threshold (5 completed, all failed) is crossed long before the 40 are released.
      const job = await createJob({ target: { deviceIds: ids }, rollout: { maxPerMinute: 120 }, abort: { failedPercent: 50, minCompleted: 5 } });
      const aborted = await eventually(() => getJob(job.id), (j) => j.state === 'aborted', 30_000);
      expect(aborted.stateReason).toMatch(/^failed \+ timed_out \d+ of \d+ completed \(100%\) reached abort.failedPercent 50%$/);
      expect(aborted.timeline.map((e) => e.state ?? e.event)).toEqual(['scheduled', 'running', 'leased', 'aborted']);
      // Releasing stopped: most targets were never released, and the count stays.
      expect(aborted.counts.notReleased).toBeGreaterThan(20);
      await eventually(() => db.pool.query('select finalized from jobs where id = $1', [job.id]), (r) => r.rows[0].finalized === true);
      const settled = await getJob(job.id);
      expect(settled.counts.queued).toBe(0);
      // A window in which nothing more must be released.
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await getJob(job.id)).released).toBe(settled.released);
    } finally {
      await devices.stop();
    }
  });

  it('cancel mid-rollout stops releasing and cancels the queued actuations; a second cancel is 409', async () => {
    const ids = numberedDeviceIds('jobcancel', 200);
    const job = await createJob({ target: { deviceIds: ids }, rollout: { maxPerMinute: 600 } });
    await eventually(() => getJob(job.id), (j) => j.released >= 10, 20_000);
    const res = await server.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const cancelled = (await res.json()) as Job;
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.stateReason).toBe('cancelled by tester');
    await eventually(() => db.pool.query('select finalized from jobs where id = $1', [job.id]), (r) => r.rows[0].finalized === true);
    const after = await getJob(job.id);
    // Every actuation made (also one released in the page that was in flight) is cancelled; nothing queued.
    expect(after.counts.queued).toBe(0);
    expect(after.counts.cancelled).toBe(after.released);
    expect(after.counts.notReleased).toBe(200 - after.released);
    expect(after.counts.notReleased).toBeGreaterThan(100);
    const { rows } = await db.pool.query(`select count(*)::int as n from actuations where source->>'jobId' = $1 and status <> 'cancelled'`, [job.id]);
    expect(rows[0].n).toBe(0);
    await new Promise((r) => setTimeout(r, 1_000)); // a window in which nothing more must be released
    expect((await getJob(job.id)).released).toBe(after.released);
    const again = await server.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(again.status).toBe(409);
  });

  it('resolves a filter target when the job starts: a snapshot of the registry by tags, account and online', async () => {
    const rows: [string, string | null, Record<string, string>, boolean][] = [
      ['flt-1', 'acme', { model: 'f2', site: 'berlin' }, true],
      ['flt-2', 'acme', { model: 'f2' }, false],
      ['flt-3', 'acme', { model: 'f1' }, true],
      ['flt-4', 'other', { model: 'f2' }, true],
      ['flt-5', null, { model: 'f2' }, true],
      ['flt-6', 'acme', { model: 'f2', site: 'paris' }, true],
    ];
    // The sessions' instance is alive (a heartbeat an hour long), so the dead-instance sweep leaves them open.
    await db.pool.query(`insert into instances (id, heartbeat_interval_ms) values ('elsewhere', 3600000) on conflict (id) do update set last_heartbeat_at = now()`);
    for (const [id, account, tags, online] of rows) {
      await db.pool.query('insert into devices (device_id, account_id, tags) values ($1, $2, $3)', [id, account, JSON.stringify(tags)]);
      if (online) await db.pool.query(`insert into device_sessions (device_id, account_id, instance_id) values ($1, $2, 'elsewhere')`, [id, account]);
    }
    // Starts in 1.5 s: a device registered before then is included, one registered after is not.
    const startAt = new Date(Date.now() + 1_500).toISOString();
    const job = await createJob({ target: { tags: { model: 'f2' }, accountId: 'acme', online: true }, startAt });
    expect(job.targets).toBeNull();
    await db.pool.query(`insert into devices (device_id, account_id, tags) values ('flt-7', 'acme', '{"model":"f2"}')`);
    await db.pool.query(`insert into device_sessions (device_id, account_id, instance_id) values ('flt-7', 'acme', 'elsewhere')`);
    const started = await eventually(() => getJob(job.id), (j) => j.state === 'running' && j.released === j.targets, 20_000);
    await db.pool.query(`insert into devices (device_id, account_id, tags) values ('flt-8', 'acme', '{"model":"f2"}')`);
    await db.pool.query(`insert into device_sessions (device_id, account_id, instance_id) values ('flt-8', 'acme', 'elsewhere')`);
    expect(started.targets).toBe(3);
    const { rows: targets } = await db.pool.query('select device_id from job_targets where job_id = $1 order by device_id', [job.id]);
    expect(targets.map((r) => r.device_id)).toEqual(['flt-1', 'flt-6', 'flt-7']);
    await server.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
  });

  it('a continuous filter also targets devices that match after the start, once each; cancel stops it', async () => {
    const ids = ['cont-1', 'cont-2', 'cont-3', 'cont-4'];
    const devices = fleet(ids, 'ok');
    await devices.authenticated();
    const tag = async (id: string, tags: Record<string, string>) => {
      const res = await server.api(`/v1/devices/${id}`, { method: 'PUT', json: { tags } });
      expect(res.status, await res.clone().text()).toBeLessThan(300);
    };
    /** Actuations of the job per device (every one, whatever its status). */
    const perDevice = async (jobId: string) => {
      const { rows } = await db.pool.query<{ device_id: string; n: number }>(
        `select device_id, count(*)::int as n from actuations where source->>'jobId' = $1 group by device_id order by device_id`,
        [jobId],
      );
      return Object.fromEntries(rows.map((r) => [r.device_id, r.n]));
    };
    try {
      await tag('cont-1', { grp: 'cont' });
      await tag('cont-3', { grp: 'other' });
      const job = await createJob({ target: { tags: { grp: 'cont' }, continuous: true } });
      expect((job as unknown as { target: unknown }).target).toEqual({ kind: 'filter', tags: { grp: 'cont' }, continuous: true });
      await eventually(() => getJob(job.id), (j) => j.state === 'running' && j.counts.acked === 1, 20_000);
      // After the start: one connected device retagged to match, one new device registered (never connects: stays queued),
      // one retagged to something else.
      await tag('cont-2', { grp: 'cont' });
      await tag('cont-5', { grp: 'cont' });
      await tag('cont-4', { grp: 'elsewhere' });
      const grown = await eventually(() => getJob(job.id), (j) => j.counts.acked === 2 && j.counts.queued === 1, 20_000);
      expect(grown.targets).toBe(3);
      // A window of several passes (200 ms) in which no device may be targeted or released twice.
      await new Promise((r) => setTimeout(r, 1_500));
      const still = await getJob(job.id);
      expect(still.state).toBe('running');
      expect(still.released).toBe(3);
      expect(await perDevice(job.id)).toEqual({ 'cont-1': 1, 'cont-2': 1, 'cont-5': 1 });
      expect(Object.fromEntries(devices.devices.map((d) => [d.deviceId, d.stats.actuations]))).toEqual({ 'cont-1': 1, 'cont-2': 1, 'cont-3': 0, 'cont-4': 0 });

      const res = await server.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      expect(res.status).toBe(200);
      await eventually(() => db.pool.query('select finalized from jobs where id = $1', [job.id]), (r) => r.rows[0].finalized === true);
      // A device matching after the cancel is not targeted.
      await tag('cont-6', { grp: 'cont' });
      await new Promise((r) => setTimeout(r, 1_000));
      const after = await getJob(job.id);
      expect(after.state).toBe('cancelled');
      expect(after.targets).toBe(3);
      expect(after.counts).toMatchObject({ acked: 2, cancelled: 1, queued: 0 });
      expect(await perDevice(job.id)).toEqual({ 'cont-1': 1, 'cont-2': 1, 'cont-5': 1 });
    } finally {
      await devices.stop();
    }
  });

  it('a continuous job never completes by itself before its endAt; then it stops growing and completes once what it released is final', async () => {
    const ids = ['contend-1', 'contend-2'];
    const devices = fleet(ids, 'ok');
    await devices.authenticated();
    try {
      await server.api('/v1/devices/contend-1', { method: 'PUT', json: { tags: { grp: 'contend' } } });
      const endAt = new Date(Date.now() + 2_500).toISOString();
      const job = await createJob({ target: { tags: { grp: 'contend' }, continuous: true }, endAt });
      expect((job as unknown as { endAt: string }).endAt).toBe(endAt);
      await eventually(() => getJob(job.id), (j) => j.counts.acked === 1, 20_000);
      // Before endAt: still running although its one actuation is acked (without the `growing` guard in the releaser's
      // checkProgress it completed at once: checked, finishedAt was before endAt).
      expect((await getJob(job.id)).state).toBe('running');
      const done = await eventually(() => getJob(job.id), (j) => j.state === 'completed', 20_000);
      expect(Date.parse((done as unknown as { finishedAt: string }).finishedAt)).toBeGreaterThanOrEqual(Date.parse(endAt));
      // Matching after endAt: not targeted.
      await server.api('/v1/devices/contend-2', { method: 'PUT', json: { tags: { grp: 'contend' } } });
      await new Promise((r) => setTimeout(r, 1_000));
      const after = await getJob(job.id);
      expect(after.targets).toBe(1);
      expect(Object.fromEntries(devices.devices.map((d) => [d.deviceId, d.stats.actuations]))).toEqual({ 'contend-1': 1, 'contend-2': 0 });
    } finally {
      await devices.stop();
    }
  });

  it('refuses bad bodies with 400 naming the field, unknown jobs with 404', async () => {
    const bad = async (body: unknown, message: RegExp) => {
      const res = await server.api('/v1/jobs', { method: 'POST', json: body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    };
    await bad({ name: 'x', actuation, target: {} }, /^target: give deviceIds or a filter/);
    await bad({ name: 'x', actuation, target: { deviceIds: ['a'], tags: { a: 'b' } } }, /^target: give either deviceIds or a filter/);
    await bad({ name: 'x', actuation, target: { deviceIds: [] } }, /^target\.deviceIds: /);
    await bad({ name: 'x', actuation, target: { deviceIds: ['a'] }, rollout: { maxPerMinute: 0 } }, /^rollout\.maxPerMinute: /);
    await bad({ name: 'x', actuation, target: { deviceIds: ['a'] }, abort: { failedPercent: 101, minCompleted: 1 } }, /^abort\.failedPercent: /);
    await bad({ name: 'x', actuation, target: { deviceIds: ['a'] }, startAt: 'tomorrow' }, /^startAt: /);
    await bad({ name: 'x', actuation: { command: 'x' }, target: { deviceIds: ['a'] } }, /^actuation\.componentId: /);
    await bad({ name: 'x', actuation, target: { deviceIds: ['a'], continuous: true } }, /^target\.continuous: is for a filter target/);
    await bad({ name: 'x', actuation, target: { tags: { a: 'b' }, continuous: false } }, /^target\.continuous: /);
    await bad({ name: 'x', actuation, target: { tags: { a: 'b' } }, endAt: new Date(Date.now() + 60_000).toISOString() }, /^endAt: is only for a continuous target/);
    await bad({ name: 'x', actuation, target: { tags: { a: 'b' }, continuous: true }, endAt: '2020-01-01T00:00:00Z' }, /^endAt: must be in the future/);
    const schedule = await server.api('/v1/schedules', {
      method: 'POST',
      json: { name: 's', cron: '0 2 * * *', job: { name: 'x', actuation, target: { tags: { a: 'b' }, continuous: true } } },
    });
    expect(schedule.status).toBe(400);
    expect(((await schedule.json()) as { error: { message: string } }).error.message).toMatch(/^job\.target\.continuous: is not available in a schedule's job/);
    const unknown = await server.api('/v1/jobs/0190e7a4-0000-7000-8000-000000000000');
    expect(unknown.status).toBe(404);
  });
});
