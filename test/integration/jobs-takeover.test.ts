/**
 * A job across two real server processes: the instance releasing it is killed with
 * SIGKILL mid-rollout; the other takes the job over once the lease runs out and completes
 * it, and no device gets two actuations of the job.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { numberedDeviceIds, startDeviceFleet } from '../../src/simulator/device-simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startInstanceProcess, type InstanceProcess } from '../helpers/main-process.js';

let db: TestDatabase;
const instances: InstanceProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const env = { JOBS_POLL_MS: '200', JOBS_LEASE_MS: '2000' };
  instances.push(...(await Promise.all([startInstanceProcess(db.url, 'jobs-a', env), startInstanceProcess(db.url, 'jobs-b', env)])));
}, 120_000);
afterAll(async () => {
  for (const i of instances) await i.process.kill();
  await db?.drop();
});

interface Job {
  id: string;
  state: string;
  released: number;
  holder: { instanceId: string } | null;
  counts: Record<string, number>;
  timeline: { state?: string; event?: string; instance?: string }[];
}

describe('a job whose releasing instance is killed', () => {
  it('pauses only until the other instance takes it over; it completes there, one actuation per device', async () => {
    const [a] = instances;
    const ids = numberedDeviceIds('takeover', 150);
    const res = await a!.api('/v1/jobs', {
      method: 'POST',
      json: { name: 'takeover', target: { deviceIds: ids }, actuation: { componentId: 'c', command: 'OFF', params: [] }, rollout: { maxPerMinute: 1200 } },
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const getJob = async () => (await (await a!.api(`/v1/jobs/${id}`)).json()) as Job;

    // 20/s: 150 targets take ~7.5 s; kill the holder once some are out.
    const midway = await eventually(getJob, (j) => j.holder !== null && j.released >= 30, 30_000);
    const holder = instances.find((i) => i.instanceId === midway.holder!.instanceId)!;
    const survivor = instances.find((i) => i !== holder)!;
    // The devices connect to the survivor (their actuations, queued meanwhile, reach them there).
    const devices = startDeviceFleet({ url: survivor.wsUrl, deviceIds: ids, token: (d) => mint(d), ack: 'ok', pingIntervalMs: 0, spreadMs: 500 });
    try {
      holder.process.child.kill('SIGKILL');
      await holder.process.exited;
      const releasedAtKill = (await db.pool.query<{ n: number }>('select released_count as n from jobs where id = $1', [id])).rows[0]!.n;
      expect(releasedAtKill).toBeLessThan(150);

      const survivorApi = async () => (await (await survivor.api(`/v1/jobs/${id}`)).json()) as Job;
      // The lease (2 s) runs out and the survivor's next poll takes the job.
      await eventually(survivorApi, (j) => j.holder?.instanceId === survivor.instanceId, 15_000);
      await devices.authenticated();
      const done = await eventually(survivorApi, (j) => j.state === 'completed', 60_000);
      expect(done.counts).toMatchObject({ acked: 150, notReleased: 0 });
      expect(done.timeline.filter((e) => e.event === 'leased').map((e) => e.instance)).toEqual([holder.instanceId, survivor.instanceId]);

      // No device got two actuations of the job, whatever the kill interrupted (submitted, not yet marked
      // released: the survivor submits that page again and gets the existing actuations back, by their
      // idempotency key; the unique index on it is the guard, so this cannot be made to fail from here).
      const { rows } = await db.pool.query<{ device_id: string; n: number }>(
        `select device_id, count(*)::int as n from actuations where source->>'jobId' = $1 group by device_id`,
        [id],
      );
      expect(rows).toHaveLength(150);
      expect(rows.filter((r) => r.n !== 1)).toEqual([]);
      expect(devices.devices.filter((d) => d.stats.actuations !== 1).map((d) => d.deviceId)).toEqual([]);
    } finally {
      await devices.stop();
    }
  }, 120_000);
});
