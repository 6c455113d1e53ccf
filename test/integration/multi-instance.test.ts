/**
 * Several instances on one database: in-process apps for routing and takeover,
 * real processes for SIGKILL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, type ServerMessage } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startInstanceProcess, type ServerProcess } from '../helpers/main-process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  a = await startTestServer(db, { INSTANCE_ID: 'instance-a' });
  b = await startTestServer(db, { INSTANCE_ID: 'instance-b' });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await db?.drop();
});

const command = { componentId: 'c', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

describe('several instances on one database', () => {
  it('delivers an actuation posted to instance A to a device connected to instance B', async () => {
    const device = await connectAuthenticated(b.wsUrl, 'cross-1', mint('cross-1'));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await a.api('/v1/devices/cross-1/actuations', { method: 'POST', json: command });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const got: ServerMessage[] = [];
    for (let i = 0; i < 5; i++) got.push(await device.next(3_000));
    expect(got.map((m) => m.id)).toEqual(ids);
    const record = (await (await a.api(`/v1/actuations/${ids[0]}`)).json()) as { lastInstanceId: string };
    expect(record.lastInstanceId).toBe('instance-b');
    device.close();
  });

  it('ends the session on A when the device connects to B (takeover across instances)', async () => {
    const onA = await connectAuthenticated(a.wsUrl, 'roam-1', mint('roam-1'));
    const onB = await connectAuthenticated(b.wsUrl, 'roam-1', mint('roam-1'));
    expect(await onA.closed).toEqual({ code: 1000, reason: 'session replaced' });
    const { rows } = await db.pool.query('select instance_id, disconnected_at, close_reason from device_sessions where device_id = $1 order by id', ['roam-1']);
    expect(rows.map((r) => [r.instance_id, r.disconnected_at === null, r.close_reason])).toEqual([
      ['instance-a', false, 'session replaced'],
      ['instance-b', true, null],
    ]);
    // Only B delivers now.
    await a.api('/v1/devices/roam-1/actuations', { method: 'POST', json: command });
    const message = await onB.next(3_000);
    expect(message.code).toBe(1024);
    onB.close();
  });
});

describe('instances with different heartbeat intervals', () => {
  it("judge each other by the other's interval, not their own", async () => {
    // A healthy instance beating every 60 s, last seen 10 s ago, holding a session.
    await db.pool.query(`insert into instances (id, last_heartbeat_at, heartbeat_interval_ms) values ('slow-beat', now() - interval '10 seconds', 60000)`);
    await db.pool.query(`insert into device_sessions (device_id, instance_id) values ('on-slow-beat', 'slow-beat')`);
    // An instance beating every 100 ms: three of its own beats pass many times over.
    const fast = await startTestServer(db, { INSTANCE_HEARTBEAT_MS: '100' });
    try {
      const before = Date.now();
      await eventually(async () => (await db.pool.query(`select last_heartbeat_at from instances where id = $1`, [fast.config.instanceId])).rows[0]?.last_heartbeat_at, (t) => t && t.getTime() > before + 500);
      const { rows } = await db.pool.query(`select disconnected_at from device_sessions where device_id = 'on-slow-beat'`);
      expect(rows).toEqual([{ disconnected_at: null }]);
    } finally {
      await fast.close();
    }
  });
});

describe('an instance killed with SIGKILL', () => {
  const processes: ServerProcess[] = [];
  afterAll(async () => {
    for (const p of processes) await p.kill();
  });

  async function start(instanceId: string) {
    const instance = await startInstanceProcess(db.url, instanceId);
    processes.push(instance.process);
    const post = async (deviceId: string) => {
      const res = await instance.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command });
      expect(res.status).toBe(202);
      return ((await res.json()) as { id: string }).id;
    };
    return { ...instance, post };
  }

  it('loses nothing: queued and in-flight actuations reach the device on the survivor, acked ones never come twice', async () => {
    const [p1, p2] = await Promise.all([start('killed-1'), start('survivor-1')]);
    const deviceId = 'kill-1';
    const received: ServerMessage[] = [];

    let device = await connectAuthenticated(p1.wsUrl, deviceId, mint(deviceId));
    const acked = await p1.post(deviceId);
    received.push(await device.next());
    device.send({ type: 'ack', id: acked, statusCode: 200 });
    await eventually(async () => (await db.pool.query('select status from actuations where id = $1', [acked])).rows[0].status, (s) => s === 'acked');
    const inFlight = await p2.post(deviceId); // crosses to p1 through NOTIFY, sent, never acked
    received.push(await device.next());
    expect(received[1]!.id).toBe(inFlight);

    p1.process.child.kill('SIGKILL');
    await p1.process.exited;
    await device.closed;

    const queued = [await p2.post(deviceId), await p2.post(deviceId)];
    device = await connectAuthenticated(p2.wsUrl, deviceId, mint(deviceId));
    for (let i = 0; i < 3; i++) {
      const message = await device.next();
      received.push(message);
      device.send({ type: 'ack', id: message.id, statusCode: 200 });
    }
    expect(received.slice(2).map((m) => m.id)).toEqual([inFlight, ...queued]);

    const all = [acked, inFlight, ...queued];
    const rows = await eventually(
      async () => (await db.pool.query('select id, status from actuations where device_id = $1 order by seq', [deviceId])).rows,
      (r) => r.every((x) => x.status === 'acked'),
    );
    expect(rows.map((r) => [r.id, r.status])).toEqual(all.map((id) => [id, 'acked']));
    expect(received.filter((m) => m.id === acked)).toHaveLength(1);
    // The dead instance's session was closed by the survivor.
    const open = await db.pool.query(`select instance_id from device_sessions where device_id = $1 and disconnected_at is null`, [deviceId]);
    expect(open.rows).toEqual([{ instance_id: 'survivor-1' }]);
    device.close();
  });
});
