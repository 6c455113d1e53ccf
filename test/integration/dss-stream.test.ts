/**
 * DSS end to end, in process: the real simulator (a WebSocket peer on its own
 * port), the real app with its supervisor, stream client, rules and queue, a real
 * device on the `websocket` client, all against a real PostgreSQL.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEY = 'e2e0123456789abcdef0123456789abc';
const DSS_ENV = {
  DSS_SUPERVISOR_INTERVAL_MS: '200',
  DSS_RECONNECT_MIN_MS: '50',
  DSS_RECONNECT_MAX_MS: '400',
  DSS_FLUSH_INTERVAL_MS: '100',
  DSS_RULES_REFRESH_MS: '100',
  DSS_IDLE_TIMEOUT_MS: '5000',
};

let db: TestDatabase;
let sim: DssSimulator;
let server: TestServer;
let streamId: string;
const devices: DeviceClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 150 });
  server = await startTestServer(db, DSS_ENV);
  const res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'sim', url: sim.streamUrl, streamKey: KEY } });
  expect(res.status).toBe(201);
  streamId = ((await res.json()) as { id: string }).id;
  await eventually(async () => stream(), (s) => s.status.connected);
});
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});
afterAll(async () => {
  await server?.close();
  await sim?.close();
  await db?.drop();
});

interface StreamView {
  streamKey: string;
  status: { connected: boolean; holder: string | null; lastSeq: number | null; events: number; heartbeats: number; errors: number; lastError: string | null };
}
async function stream(s: TestServer = server): Promise<StreamView> {
  return (await (await s.api(`/v1/dss/streams/${streamId}`)).json()) as StreamView;
}

async function createRule(body: Record<string, unknown>): Promise<string> {
  const res = await server.api('/v1/rules', { method: 'POST', json: body });
  expect(res.status, JSON.stringify(await res.clone().json())).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

/** In the order each device gets them (its queue seq), which must be the events' order. */
async function actuationsOfRule(ruleId: string) {
  const { rows } = await db.pool.query(
    `select device_id, command, params, source, idempotency_key, collapse_key from actuations where source->>'ruleId' = $1 order by device_id, seq`,
    [ruleId],
  );
  return rows as { device_id: string; command: string; params: { name: string; value: unknown }[]; source: { seq: number; streamId: string } }[];
}

async function connect(deviceId: string): Promise<DeviceClient> {
  const device = await connectAuthenticated(server.wsUrl, deviceId, mint(deviceId));
  devices.push(device);
  return device;
}

describe('DSS stream → rule → actuation', () => {
  it('answers heartbeats: the simulator never closes the socket for a missed one', async () => {
    const before = sim.stats();
    const after = await eventually(async () => sim.stats(), (s) => s.heartbeatsAnswered >= before.heartbeatsAnswered + 3, 5_000);
    expect(after.heartbeatsAnswered).toBeGreaterThanOrEqual(before.heartbeatsAnswered + 3);
    expect(after.closedForMissedHeartbeat).toBe(0);
    expect(after.connectionsTotal).toBe(1);
    const view = await eventually(() => stream(), (s) => s.status.heartbeats >= 3);
    expect(view.status.heartbeats).toBeGreaterThanOrEqual(3);
    expect(view.streamKey).toBe(`****${KEY.slice(-4)}`);
    const metrics = await (await server.api('/metrics')).text();
    expect(metrics).toMatch(new RegExp(`iotws_dss_frames_total\\{stream="${streamId}",kind="heartbeat"\\} [1-9]`));
  });

  it('delivers a datapoint (with | in its value) as an actuation to a connected device', async () => {
    const ruleId = await createRule({
      name: 'led',
      match: { eventType: 'datapoint', dsn: 'AC-LIVE', propertyName: 'Blue_LED' },
      action: { deviceId: 'dev-{{dsn}}', componentId: 'led', command: 'LED.v1.0', params: [{ name: 'LED', value: '{{value}}' }] },
    });
    const device = await connect('dev-AC-LIVE');
    const [event] = sim.emit(KEY, { type: 'datapoint', dsn: 'AC-LIVE', property: 'Blue_LED', baseType: 'string', value: 'on|off' });
    const message = await device.next(10_000);
    expect(message).toMatchObject({
      code: 1024,
      content: { content: { deviceId: 'dev-AC-LIVE', componentId: 'led', command: 'LED.v1.0', params: [{ name: 'LED', value: 'on|off' }] } },
    });
    const rows = await actuationsOfRule(ruleId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.source).toEqual({ kind: 'dss', streamId, seq: Number(event!.seq), ruleId });
  });

  it('queues the actuation for a device that connects later', async () => {
    await createRule({
      name: 'later',
      match: { eventType: 'datapoint', dsn: 'AC-LATER', condition: { op: 'gte', value: 30 } },
      action: { deviceId: 'dev-later', componentId: 'fan', command: 'FAN.on', params: [{ name: 'temp', value: '{{value}}' }], ttlSeconds: 600 },
    });
    sim.emit(KEY, [
      { type: 'datapoint', dsn: 'AC-LATER', property: 'temp', baseType: 'integer', value: 29 },
      { type: 'datapoint', dsn: 'AC-LATER', property: 'temp', baseType: 'integer', value: 31 },
    ]);
    const seq = Number(sim.events(KEY).at(-1)!.seq);
    await eventually(() => stream(), (s) => (s.status.lastSeq ?? 0) >= seq);
    const device = await connect('dev-later');
    expect(await device.next(10_000)).toMatchObject({ code: 1024, content: { content: { command: 'FAN.on', params: [{ name: 'temp', value: '31' }] } } });
    await new Promise((r) => setTimeout(r, 300)); // a window for a duplicate to show up (absence has no event)
    expect(device.pending()).toEqual([]);
  });

  it('skips malformed frames and unknown event shapes without dropping the connection', async () => {
    const ruleId = await createRule({
      name: 'after-garbage',
      match: { eventType: 'connectivity', dsn: 'AC-GARBAGE', condition: { op: 'eq', value: 'Offline' } },
      action: { deviceId: 'dev-garbage', componentId: 'c', command: 'ALERT' },
    });
    const before = await stream();
    const connections = sim.stats().connectionsTotal;
    const json = JSON.stringify({ seq: '999', metadata: { event_type: 'datapoint' } });
    expect(sim.sendRaw(KEY, `${json.length + 7}|${json}`)).toBe(1); // length mismatch
    sim.sendRaw(KEY, '9|{"seq":1,'); // invalid JSON
    sim.sendRaw(KEY, 'garbage without a prefix');
    sim.sendRaw(KEY, `${json.length}|${json}`); // valid JSON, unknown shape
    sim.emit(KEY, { type: 'connectivity', dsn: 'AC-GARBAGE', status: 'Offline' });
    const rows = await eventually(() => actuationsOfRule(ruleId), (r) => r.length === 1);
    expect(rows).toHaveLength(1);
    const after = await eventually(() => stream(), (s) => s.status.errors >= before.status.errors + 4);
    expect(after.status.errors).toBe(before.status.errors + 4);
    expect(after.status.lastError).toMatch(/DSS_ERR_EVENT_SHAPE/);
    expect(sim.stats().connectionsTotal).toBe(connections);
  });

  it('resumes after a dropped connection with seq_start = last seq + 1: nothing lost, nothing twice', async () => {
    const ruleId = await createRule({
      name: 'every',
      match: { eventType: 'datapoint', dsn: 'AC-DROP' },
      action: { deviceId: 'dev-drop', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const first = sim.emit(KEY, [1, 2, 3].map((v) => ({ type: 'datapoint' as const, dsn: 'AC-DROP', property: 'p', baseType: 'integer', value: v })));
    await eventually(() => stream(), (s) => s.status.lastSeq === Number(first.at(-1)!.seq));
    const lastSeq = Number(first.at(-1)!.seq);
    expect(sim.disconnect(KEY)).toBe(1);
    // Sent while nobody is connected: only a replay can deliver these.
    sim.emit(KEY, [4, 5].map((v) => ({ type: 'datapoint' as const, dsn: 'AC-DROP', property: 'p', baseType: 'integer', value: v })));
    const rows = await eventually(() => actuationsOfRule(ruleId), (r) => r.length === 5);
    expect(rows.map((r) => r.params[0]!.value)).toEqual(['1', '2', '3', '4', '5']);
    expect(sim.stats().connections.at(-1)).toMatchObject({ seqStart: lastSeq + 1 });
  });

  it('changed and cooldown: fires on a change only, at most once per cooldown', async () => {
    const changedRule = await createRule({
      name: 'changed',
      match: { eventType: 'datapoint', dsn: 'AC-CHG', propertyName: 'mode', condition: { op: 'changed' } },
      action: { deviceId: 'dev-chg', componentId: 'c', command: 'MODE', params: [{ name: 'm', value: '{{value}}' }] },
    });
    const cooldownRule = await createRule({
      name: 'cooldown',
      match: { eventType: 'datapoint', dsn: 'AC-CHG', propertyName: 'mode' },
      action: { deviceId: 'dev-cool', componentId: 'c', command: 'PING' },
      cooldownSeconds: 3600,
    });
    sim.emit(KEY, ['a', 'a', 'b', 'b', 'a'].map((v) => ({ type: 'datapoint' as const, dsn: 'AC-CHG', property: 'mode', baseType: 'string', value: v })));
    const seq = Number(sim.events(KEY).at(-1)!.seq);
    await eventually(() => stream(), (s) => (s.status.lastSeq ?? 0) >= seq);
    expect((await actuationsOfRule(changedRule)).map((r) => r.params[0]!.value)).toEqual(['b', 'a']);
    expect(await actuationsOfRule(cooldownRule)).toHaveLength(1);
  });

  it('survives a server restart mid-stream: no event lost, none acted on twice', async () => {
    const ruleId = await createRule({
      name: 'restart',
      match: { eventType: 'datapoint', dsn: 'AC-RESTART' },
      action: { deviceId: 'dev-restart', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const emitBatch = (from: number, n: number) =>
      sim.emit(KEY, Array.from({ length: n }, (_, i) => ({ type: 'datapoint' as const, dsn: 'AC-RESTART', property: 'p', baseType: 'integer', value: from + i })));
    emitBatch(0, 50);
    // Close while events are in flight (some processed, position maybe not yet flushed).
    await eventually(() => actuationsOfRule(ruleId), (r) => r.length >= 10, 10_000, 5);
    await server.close();
    emitBatch(50, 50);
    server = await startTestServer(db, DSS_ENV);
    emitBatch(100, 50);
    const rows = await eventually(() => actuationsOfRule(ruleId), (r) => r.length >= 150, 20_000);
    expect(rows.map((r) => Number(r.params[0]!.value))).toEqual(Array.from({ length: 150 }, (_, i) => i));
    await new Promise((r) => setTimeout(r, 300)); // a window for duplicates to show up (absence has no event)
    expect(await actuationsOfRule(ruleId)).toHaveLength(150);
    const view = await eventually(() => stream(), (s) => s.status.connected);
    expect(view.status.holder).toBe(server.config.instanceId);
  });

  it('lets go of a disabled stream and resumes where it stopped when enabled again', async () => {
    const ruleId = await createRule({
      name: 'toggle',
      match: { eventType: 'datapoint', dsn: 'AC-TOGGLE' },
      action: { deviceId: 'dev-toggle', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const emit = (v: number) => sim.emit(KEY, { type: 'datapoint', dsn: 'AC-TOGGLE', property: 'p', baseType: 'integer', value: v });
    emit(1);
    await eventually(() => actuationsOfRule(ruleId), (r) => r.length === 1);
    let res = await server.api(`/v1/dss/streams/${streamId}`, { method: 'PATCH', json: { enabled: false } });
    expect(res.status).toBe(200);
    await eventually(async () => sim.stats().connectionsOpen, (n) => n === 0);
    expect(sim.stats().connectionsOpen).toBe(0);
    expect((await eventually(() => stream(), (s) => !s.status.connected && s.status.holder === null)).status).toMatchObject({ connected: false, holder: null });
    const lastSeq = (await stream()).status.lastSeq!;
    emit(2);
    res = await server.api(`/v1/dss/streams/${streamId}`, { method: 'PATCH', json: { enabled: true } });
    expect(res.status).toBe(200);
    const rows = await eventually(() => actuationsOfRule(ruleId), (r) => r.length === 2);
    expect(rows.map((r) => r.params[0]!.value)).toEqual(['1', '2']);
    expect(sim.stats().connections.at(-1)).toMatchObject({ seqStart: lastSeq + 1 });
  });

  it('stops the stream when its lock connection dies, then takes it again and replays: no loss, no duplicate', async () => {
    const ruleId = await createRule({
      name: 'lock-loss',
      match: { eventType: 'datapoint', dsn: 'AC-LOCK' },
      action: { deviceId: 'dev-lock', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const emit = (from: number, n: number) =>
      sim.emit(KEY, Array.from({ length: n }, (_, i) => ({ type: 'datapoint' as const, dsn: 'AC-LOCK', property: 'p', baseType: 'integer', value: from + i })));
    emit(0, 20);
    const connections = sim.stats().connectionsTotal;
    // The advisory lock's session: PostgreSQL ends it, as when a network path dies.
    const { rows } = await db.pool.query(
      `select pg_terminate_backend(pid) as ok from pg_locks where locktype = 'advisory' and classid = $1 and database = (select oid from pg_database where datname = current_database())`,
      [0x0d55],
    );
    expect(rows).toHaveLength(1);
    emit(20, 20);
    await eventually(async () => sim.stats().connectionsTotal, (n) => n > connections);
    const values = await eventually(() => actuationsOfRule(ruleId), (r) => r.length >= 40, 15_000);
    await new Promise((r) => setTimeout(r, 300)); // a window for duplicates to show up (absence has no event)
    expect((await actuationsOfRule(ruleId)).map((r) => Number(r.params[0]!.value))).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(values).toHaveLength(40);
    expect((await eventually(() => stream(), (s) => s.status.connected)).status.holder).toBe(server.config.instanceId);
  });
});

describe('a stream whose handshake fails', () => {
  it('counts each failed attempt in errors, keeps why in lastError (never the key) and publishes dss.stream.error', async () => {
    const wrongKey = 'ffff0123456789abcdef0123456789ab';
    const res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'wrong-key', url: sim.streamUrl, streamKey: wrongKey } });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as { id: string }).id;
    const view = async () => (await (await server.api(`/v1/dss/streams/${id}`)).json()) as StreamView;
    // The simulator answers an unknown key's upgrade with 401, as DSS does.
    const failing = await eventually(view, (s) => s.status.errors >= 2, 10_000);
    expect(failing.status.connected).toBe(false);
    expect(failing.status.lastError).toMatch(/^DSS_ERR_CONNECT: .*401/);
    expect(failing.status.lastError).not.toContain(wrongKey);
    // Checked without the change: errors stayed 0 and no dss.stream.error was published.
    const events = await eventually(
      async () => (await db.pool.query<{ data: { streamId: string; lastError: string } }>(`select data from events where type = 'dss.stream.error' and data->>'streamId' = $1`, [id])).rows,
      (rows) => rows.length >= 1,
      10_000,
    );
    expect(events[0]!.data.lastError).toMatch(/DSS_ERR_CONNECT/);
    expect(JSON.stringify(events)).not.toContain(wrongKey);
    expect((await server.api(`/v1/dss/streams/${id}`, { method: 'DELETE' })).status).toBe(204);
  });
});
