/** `/v1/dss/streams` and `/v1/rules` through the real app (DSS clients off: no peer needed). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { DSS_ENABLED: 'false' });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const KEY = 'abcdef01234567890000000000000001';

async function json(res: Response) {
  return (await res.json()) as Record<string, any>;
}

describe('/v1/dss/streams', () => {
  it('creates, reads, lists, updates and deletes; the key is never returned in full', async () => {
    let res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'freezers', url: 'wss://stream.aylanetworks.com/stream', streamKey: KEY } });
    expect(res.status).toBe(201);
    const created = await json(res);
    expect(created).toMatchObject({
      name: 'freezers',
      url: 'wss://stream.aylanetworks.com/stream',
      streamKey: '****0001',
      enabled: true,
      status: { connected: false, holder: null, lastSeq: null, events: 0, heartbeats: 0, errors: 0 },
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);

    expect(await json(await server.api(`/v1/dss/streams/${created.id}`))).toEqual(created);
    const list = await json(await server.api('/v1/dss/streams'));
    expect(list.items).toEqual([created]);
    expect(JSON.stringify(list)).not.toContain(KEY);

    await db.pool.query('update dss_streams set last_seq = 41 where id = $1', [created.id]);
    res = await server.api(`/v1/dss/streams/${created.id}`, { method: 'PATCH', json: { name: 'renamed', enabled: false } });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ name: 'renamed', enabled: false, streamKey: '****0001', status: { lastSeq: 41 } });
    // A new key is a new subscription: its seqs start over.
    res = await server.api(`/v1/dss/streams/${created.id}`, { method: 'PATCH', json: { streamKey: 'ffffffff0000000000000000000000ff' } });
    expect(await json(res)).toMatchObject({ streamKey: '****00ff', status: { lastSeq: null } });
    const { rows } = await db.pool.query('select stream_key from dss_streams where id = $1', [created.id]);
    expect(rows[0].stream_key).toBe('ffffffff0000000000000000000000ff');

    expect((await server.api(`/v1/dss/streams/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await server.api(`/v1/dss/streams/${created.id}`)).status).toBe(404);
    expect((await server.api(`/v1/dss/streams/${created.id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await server.api(`/v1/dss/streams/${created.id}`, { method: 'PATCH', json: { name: 'x' } })).status).toBe(404);
  });

  it('answers 400 naming the field, 404 for an unknown id, 401 without credentials', async () => {
    const cases: [unknown, string][] = [
      [{ url: 'wss://x/stream', streamKey: KEY }, 'name'],
      [{ name: 'n', url: 'http://x/stream', streamKey: KEY }, 'url'],
      [{ name: 'n', url: 'wss://x/stream?stream_key=abc', streamKey: KEY }, 'url'],
      [{ name: 'n', url: 'wss://x/stream' }, 'streamKey'],
      [{ name: 'n', url: 'wss://x/stream', streamKey: KEY, enabled: 'yes' }, 'enabled'],
    ];
    for (const [body, field] of cases) {
      const res = await server.api('/v1/dss/streams', { method: 'POST', json: body });
      expect(res.status).toBe(400);
      const error = (await json(res)).error;
      expect(error.code).toBe('VALIDATION_FAILED');
      expect(error.message.startsWith(`${field}:`), error.message).toBe(true);
      expect(error.message).not.toContain(KEY);
    }
    expect((await server.api('/v1/dss/streams/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    const bad = await server.api('/v1/dss/streams/not-a-uuid');
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.message).toMatch(/^id:/);
    expect((await server.api('/v1/dss/streams/00000000-0000-4000-8000-000000000000', { method: 'PATCH', json: {} })).status).toBe(400);
    expect((await fetch(`${server.httpUrl}/v1/dss/streams`)).status).toBe(401);
  });
});

describe('/v1/rules', () => {
  const rule = {
    name: 'freezer too warm',
    match: { eventType: 'datapoint', oemModel: 'freezer-model', propertyName: 'temp', condition: { op: 'gt', value: -10 } },
    action: { deviceId: 'fan-{{dsn}}', componentId: 'compressor', command: 'BOOST', params: [{ name: 'temp', value: '{{value}}' }], ttlSeconds: 300, collapseKey: 'boost' },
    cooldownSeconds: 60,
  };

  it('creates with defaults, reads, lists, updates and deletes', async () => {
    let res = await server.api('/v1/rules', { method: 'POST', json: rule });
    expect(res.status).toBe(201);
    const created = await json(res);
    expect(created).toMatchObject({ ...rule, enabled: true });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await json(await server.api(`/v1/rules/${created.id}`))).toEqual(created);
    expect((await json(await server.api('/v1/rules'))).items).toContainEqual(created);

    res = await server.api('/v1/rules', { method: 'POST', json: { name: 'minimal', match: { eventType: 'connectivity' }, action: { deviceId: 'd', componentId: 'c', command: 'x' } } });
    expect(await json(res)).toMatchObject({ enabled: true, cooldownSeconds: 0, action: { params: [] } });

    res = await server.api(`/v1/rules/${created.id}`, { method: 'PATCH', json: { enabled: false, match: { eventType: 'datapoint', condition: { op: 'changed' } } } });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ enabled: false, match: { eventType: 'datapoint', condition: { op: 'changed' } }, action: rule.action });

    expect((await server.api(`/v1/rules/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await server.api(`/v1/rules/${created.id}`)).status).toBe(404);
  });

  it('answers 400 naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ ...rule, match: { ...rule.match, eventType: 'temperature' } }, 'match.eventType'],
      [{ ...rule, match: { ...rule.match, condition: { op: 'gt' } } }, 'match.condition.value'],
      [{ ...rule, match: { eventType: 'registration', propertyName: 'x' } }, 'match.propertyName'],
      [{ ...rule, action: { ...rule.action, command: undefined } }, 'action.command'],
      [{ ...rule, action: { ...rule.action, deviceId: '{{serial}}' } }, 'action.deviceId'],
      [{ ...rule, action: { ...rule.action, params: [{ name: 'a' }] } }, 'action.params.0.value'],
      [{ ...rule, cooldownSeconds: -1 }, 'cooldownSeconds'],
      [{ ...rule, match: undefined }, 'match'],
    ];
    for (const [body, field] of cases) {
      const res = await server.api('/v1/rules', { method: 'POST', json: body });
      expect(res.status).toBe(400);
      expect((await json(res)).error.message.startsWith(`${field}:`), `${field}`).toBe(true);
    }
    const { rows } = await db.pool.query(`select count(*)::int as n from dss_rules where name = $1`, [rule.name]);
    expect(rows[0].n).toBe(0);
  });
});
