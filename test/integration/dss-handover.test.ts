/**
 * Two real server processes (`src/main.ts`) share one database and one DSS
 * simulator. Exactly one holds the stream; when it is killed with SIGKILL the
 * other takes over within seconds, replays from the stored position and creates
 * every actuation exactly once. The stream key never reaches either log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startInstanceProcess, type ServerProcess } from '../helpers/main-process.js';

const KEY = 'handover0123456789abcdef0123KEY1';

let db: TestDatabase;
let sim: DssSimulator;
const processes: ServerProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 250 });
});
afterAll(async () => {
  for (const p of processes) await p.kill();
  await sim?.close();
  await db?.drop();
});

async function start(instanceId: string) {
  const instance = await startInstanceProcess(db.url, instanceId, {
    LOG_LEVEL: 'debug',
    DSS_SUPERVISOR_INTERVAL_MS: '300',
    DSS_RECONNECT_MIN_MS: '50',
    DSS_RECONNECT_MAX_MS: '500',
    // Rarely: the killed holder's stored position lags, so the successor must replay events it already acted on.
    DSS_FLUSH_INTERVAL_MS: '30000',
  });
  processes.push(instance.process);
  return instance;
}

async function actuationValues(ruleId: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ v: string }>(
    `select params->0->>'value' as v from actuations where source->>'ruleId' = $1 order by (source->>'seq')::bigint`,
    [ruleId],
  );
  return rows.map((r) => Number(r.v));
}

const datapoints = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ type: 'datapoint' as const, dsn: 'AC-HO', property: 'p', baseType: 'integer', value: from + i }));

describe('DSS stream handover between instances', () => {
  it('one holder at a time; after SIGKILL the other takes over within seconds with no loss and no duplicate', async () => {
    const a = await start('dss-a');
    let res = await a.api('/v1/dss/streams', { method: 'POST', json: { name: 'ho', url: sim.streamUrl, streamKey: KEY } });
    expect(res.status).toBe(201);
    const stream = (await res.json()) as { id: string; streamKey: string };
    expect(stream.streamKey).toBe(`****${KEY.slice(-4)}`);
    res = await a.api('/v1/rules', {
      method: 'POST',
      json: { name: 'ho', match: { eventType: 'datapoint', dsn: 'AC-HO' }, action: { deviceId: 'dev-ho', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] } },
    });
    expect(res.status).toBe(201);
    const ruleId = ((await res.json()) as { id: string }).id;

    await a.process.waitForLog((l) => l.msg === 'dss: stream connected', 10_000);
    const b = await start('dss-b');
    // B runs its supervisor too, but A keeps the stream.
    await b.process.waitForLog((l) => l.msg === 'server: listening');
    await new Promise((r) => setTimeout(r, 1_000)); // a window for B NOT to take the stream (absence has no event): several supervisor ticks
    expect(b.process.logs.some((l) => l.msg === 'dss: stream acquired')).toBe(false);
    expect(sim.stats().connectionsOpen).toBe(1);

    sim.emit(KEY, datapoints(0, 30));
    expect(await eventually(() => actuationValues(ruleId), (v) => v.length === 30)).toHaveLength(30);

    await a.process.kill();
    const killedAt = Date.now();
    sim.emit(KEY, datapoints(30, 30));
    await b.process.waitForLog((l) => l.msg === 'dss: stream connected', 10_000);
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(5_000);

    const values = await eventually(() => actuationValues(ruleId), (v) => v.length >= 60, 15_000);
    await new Promise((r) => setTimeout(r, 500)); // a window for duplicates to show up (absence has no event)
    expect(await actuationValues(ruleId)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(values).toHaveLength(60);
    // B replayed from A's last stored position (its first event), not from where A really was.
    const last = sim.stats().connections.at(-1)!;
    expect(last.seqStart).toBeLessThan(30);

    const view = (await (await b.api(`/v1/dss/streams/${stream.id}`)).json()) as { status: { holder: string; connected: boolean } };
    expect(view.status).toMatchObject({ holder: 'dss-b', connected: true });

    for (const p of processes) {
      expect(JSON.stringify(p.logs)).not.toContain(KEY);
      expect(p.stderr()).not.toContain(KEY);
    }
  });
});
