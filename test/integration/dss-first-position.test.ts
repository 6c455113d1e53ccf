/**
 * A stream that never stored a position starts live. If its holder died after acting on
 * the first events but before its first position write, a successor would start live too
 * and miss everything sent while no instance held the stream (seen in dss-handover.test.ts:
 * a SIGKILL within ~50 ms of the first events). So the position just before the first
 * event is committed before that event is acted on.
 *
 * Checked by a trigger in the test database that refuses any actuation while the stream
 * has no stored position. Without the anchoring (the first event's position written only
 * by a flush after it was acted on) the first actuation is refused and this test fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEY = 'first0123456789abcdef0123456789a';

let db: TestDatabase;
let sim: DssSimulator;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 150 });
  // A periodic flush far away: only the anchoring can store the first position in time.
  server = await startTestServer(db, { DSS_SUPERVISOR_INTERVAL_MS: '200', DSS_FLUSH_INTERVAL_MS: '60000', DSS_RULES_REFRESH_MS: '100' });
  await db.pool.query(`
    create function test_refuse_before_position() returns trigger language plpgsql as $$
    begin
      if exists (select 1 from dss_streams where last_seq is null) then
        raise exception 'actuation created while the stream has no stored position';
      end if;
      return new;
    end $$;
    create trigger test_refuse_before_position before insert on actuations
      for each row execute function test_refuse_before_position();`);
});
afterAll(async () => {
  await server?.close();
  await sim?.close();
  await db?.drop();
});

describe('the first position of a stream that started live', () => {
  it('is stored before the first event is acted on, so a successor would replay from that event', async () => {
    let res = await server.api('/v1/rules', {
      method: 'POST',
      json: { name: 'first', match: { eventType: 'datapoint', dsn: 'AC-FIRST' }, action: { deviceId: 'dev-first', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }] } },
    });
    expect(res.status).toBe(201);
    res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'first', url: sim.streamUrl, streamKey: KEY } });
    expect(res.status).toBe(201);
    const streamId = ((await res.json()) as { id: string }).id;
    await eventually(() => sim.stats().connectionsOpen, (n) => n === 1);
    expect(sim.stats().connections.at(-1)!.seqStart).toBeNull();

    const emitted = sim.emit(KEY, [1, 2, 3].map((v) => ({ type: 'datapoint' as const, dsn: 'AC-FIRST', property: 'p', baseType: 'integer', value: v })));
    const rows = await eventually(
      async () => (await db.pool.query<{ v: string }>(`select params->0->>'value' as v from actuations where device_id = 'dev-first' order by seq`)).rows,
      (r) => r.length === 3,
    );
    expect(rows.map((r) => r.v)).toEqual(['1', '2', '3']);
    const { rows: stored } = await db.pool.query<{ last_seq: string | null }>('select last_seq from dss_streams where id = $1', [streamId]);
    // At least the anchor (the seq before the first event); a flush may have moved it further.
    expect(Number(stored[0]!.last_seq)).toBeGreaterThanOrEqual(Number(emitted[0]!.seq) - 1);
    const view = (await (await server.api(`/v1/dss/streams/${streamId}`)).json()) as { status: { errors: number } };
    expect(view.status.errors).toBe(0);
  });
});
