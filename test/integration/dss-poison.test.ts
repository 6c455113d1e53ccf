/**
 * A DSS event that cannot become an actuation is counted, recorded and skipped: the
 * stream's position moves on and the device's later events are delivered, beside
 * other devices' events committed in the same batches. Real simulator, real app, real
 * PostgreSQL.
 *
 * How these were shown to fail without the mechanism: with the storable check in the
 * rule engine and the `isDataError` skip in `fire` both removed, the first test never
 * delivers "after" (the stream reconnects and replays the same seq, errors climbing);
 * with only the skip removed, the second test does the same. The third test, with the
 * `isDataError` skip around `saveRuleState` removed, never moves past the long-dsn event
 * (replayed on every reconnect, "index row size … exceeds btree version 4 maximum").
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEY = 'a0c0123456789abcdef0123456789abc';
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

interface StreamView {
  status: { connected: boolean; lastSeq: number | null; errors: number; lastError: string | null };
}
async function stream(): Promise<StreamView> {
  return (await (await server.api(`/v1/dss/streams/${streamId}`)).json()) as StreamView;
}

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 150 });
  server = await startTestServer(db, DSS_ENV);
  const res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'poison', url: sim.streamUrl, streamKey: KEY } });
  expect(res.status).toBe(201);
  streamId = ((await res.json()) as { id: string }).id;
  expect((await eventually(stream, (s) => s.status.connected)).status.connected).toBe(true);
});
afterAll(async () => {
  await server?.close();
  await sim?.close();
  await db?.drop();
});

async function createRule(body: Record<string, unknown>): Promise<string> {
  const res = await server.api('/v1/rules', { method: 'POST', json: body });
  expect(res.status, JSON.stringify(await res.clone().json())).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

/** Per device, in the order the device gets them: the rendered value of each actuation. */
async function valuesByDevice(ruleId: string): Promise<Map<string, unknown[]>> {
  const { rows } = await db.pool.query<{ device_id: string; command: string; params: { value: unknown }[] }>(
    `select device_id, command, params from actuations where source->>'ruleId' = $1 order by device_id, seq`,
    [ruleId],
  );
  const byDevice = new Map<string, unknown[]>();
  for (const r of rows) byDevice.set(r.device_id, [...(byDevice.get(r.device_id) ?? []), r.params[0]?.value ?? r.command]);
  return byDevice;
}

const datapoint = (dsn: string, property: string, value: string) => ({ type: 'datapoint' as const, dsn, property, baseType: 'string', value });

describe('DSS: an event that cannot become an actuation', () => {
  it('a templated value with U+0000 is skipped; the device\'s next event is delivered, other devices\' too, and the position moves on', async () => {
    const ruleId = await createRule({
      name: 'echo value',
      match: { eventType: 'datapoint', propertyName: 'nul' },
      action: { deviceId: 'fan-{{dsn}}', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const connectionsBefore = sim.stats().connectionsTotal;
    // One burst: the bad event among 40 others for 20 devices, so their submissions share batches.
    const inputs = [];
    for (let d = 0; d < 20; d++) inputs.push(datapoint(`N${d}`, 'nul', 'before'));
    inputs.push(datapoint('N0', 'nul', 'bad\u0000value'));
    for (let d = 0; d < 20; d++) inputs.push(datapoint(`N${d}`, 'nul', 'after'));
    const emitted = sim.emit(KEY, inputs);
    const lastSeq = Number(emitted.at(-1)!.seq);

    const byDevice = await eventually(
      () => valuesByDevice(ruleId),
      (m) => m.size === 20 && [...m.values()].every((v) => v.length === 2),
      15_000,
    );
    for (let d = 0; d < 20; d++) expect(byDevice.get(`fan-N${d}`), `fan-N${d}`).toEqual(['before', 'after']);
    const view = await eventually(stream, (s) => (s.status.lastSeq ?? 0) >= lastSeq && s.status.lastError !== null, 10_000);
    expect(view.status.lastSeq).toBeGreaterThanOrEqual(lastSeq);
    expect(view.status.errors).toBeGreaterThanOrEqual(1);
    expect(view.status.lastError).toMatch(/^DSS_ERR_UNSTORABLE: seq \d+ rule [0-9a-f-]+: actuation\.params\.0\.value/);
    // Not a replay loop: the stream kept its connection throughout.
    expect(sim.stats().connectionsTotal).toBe(connectionsBefore);
  });

  it('an actuation the database refuses for its own reason is dropped; the device\'s next event is delivered', async () => {
    // Stands in for anything PostgreSQL refuses that the edge check does not know of.
    await db.pool.query(`
      create function refuse_poison() returns trigger language plpgsql as $$
      begin
        if new.command = 'POISON' then raise exception 'poison refused' using errcode = '22023'; end if;
        return new;
      end $$;
      create trigger refuse_poison before insert on actuations for each row execute function refuse_poison();`);
    const ruleId = await createRule({
      name: 'command from value',
      match: { eventType: 'datapoint', propertyName: 'cmd' },
      action: { deviceId: 'pump-{{dsn}}', componentId: 'c', command: '{{value}}', params: [] },
    });
    const before = await stream();
    const inputs = [];
    for (let d = 0; d < 20; d++) inputs.push(datapoint(`P${d}`, 'cmd', 'START'));
    inputs.push(datapoint('P0', 'cmd', 'POISON'));
    for (let d = 0; d < 20; d++) inputs.push(datapoint(`P${d}`, 'cmd', 'STOP'));
    const emitted = sim.emit(KEY, inputs);
    const lastSeq = Number(emitted.at(-1)!.seq);

    const byDevice = await eventually(
      () => valuesByDevice(ruleId),
      (m) => m.size === 20 && [...m.values()].every((v) => v.length === 2),
      15_000,
    );
    for (let d = 0; d < 20; d++) expect(byDevice.get(`pump-P${d}`), `pump-P${d}`).toEqual(['START', 'STOP']);
    const view = await eventually(stream, (s) => (s.status.lastSeq ?? 0) >= lastSeq && s.status.errors > before.status.errors, 10_000);
    expect(view.status.lastSeq).toBeGreaterThanOrEqual(lastSeq);
    expect(view.status.errors).toBeGreaterThan(before.status.errors);
    // The last error may be the refusal itself, or not: STOP for P0 waited behind POISON and was replayed once.
    const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from actuations where command = 'POISON'`);
    expect(rows[0]!.n).toBe(0);
  });

  it('a stateful rule whose state row the database refuses (a dsn too long for its index) skips the event; the stream moves on', async () => {
    const ruleId = await createRule({
      name: 'changed, fixed device',
      match: { eventType: 'datapoint', propertyName: 'chg', condition: { op: 'changed' } },
      action: { deviceId: 'valve-1', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] },
    });
    const before = await stream();
    const connectionsBefore = sim.stats().connectionsTotal;
    // Random, so that PostgreSQL cannot compress the key below the btree limit of 2704 bytes.
    const longDsn = crypto.randomBytes(4000).toString('base64');
    const emitted = sim.emit(KEY, [
      datapoint('S1', 'chg', 'a'),
      datapoint(longDsn, 'chg', 'x'),
      datapoint(longDsn, 'chg', 'y'),
      datapoint('S1', 'chg', 'b'),
    ]);
    const lastSeq = Number(emitted.at(-1)!.seq);
    const view = await eventually(stream, (s) => (s.status.lastSeq ?? 0) >= lastSeq, 10_000);
    expect(view.status.lastSeq).toBeGreaterThanOrEqual(lastSeq);
    expect(view.status.errors).toBeGreaterThan(before.status.errors);
    // 'a' is the baseline of S1 and 'b' fires; the long dsn's events are refused at their state row.
    const byDevice = await eventually(() => valuesByDevice(ruleId), (m) => m.get('valve-1')?.includes('b') === true, 10_000);
    expect(byDevice.get('valve-1')).toContain('b');
    // Not a replay loop.
    expect(sim.stats().connectionsTotal).toBe(connectionsBefore);
  });
});
