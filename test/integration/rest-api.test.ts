/**
 * The REST API over real HTTP against a real database: authentication, the error
 * catalogue, the device and session listings, and 503 when the database goes away.
 * (POST /v1/devices/:id/actuations is covered with the durable queue.)
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makePool } from '../../src/db/pool.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, TEST_CREDENTIALS, type TestServer } from '../helpers/server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const MAX_BODY = 4096;

let db: TestDatabase;
let server: TestServer;
const devices: DeviceClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { MAX_MESSAGE_BYTES: String(MAX_BODY) });
});
afterAll(async () => {
  for (const device of devices) device.close();
  await server?.close();
  await db?.drop();
});

interface ErrorBody {
  error: { code: string; message: string };
}

async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as ErrorBody;
  expect(body).toEqual({ error: { code, message: expect.any(String) } });
  return body;
}

function basic(username: string, password: string): string {
  return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
}

describe('HTTP Basic authentication', () => {
  it('answers 401 with WWW-Authenticate when credentials are missing', async () => {
    const res = await fetch(`${server.httpUrl}/v1/devices`);
    await expectError(res, 401, 'UNAUTHORIZED');
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="[^"]+"/);
  });

  it.each([
    ['a wrong password', basic(TEST_CREDENTIALS.username, 'wrong-password')],
    ['a wrong username', basic('someone', TEST_CREDENTIALS.password)],
    ['the password as a prefix', basic(TEST_CREDENTIALS.username, TEST_CREDENTIALS.password.slice(0, -1))],
    ['the password with a suffix', basic(TEST_CREDENTIALS.username, TEST_CREDENTIALS.password + 'x')],
    ['another scheme', `Bearer ${Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64')}`],
    ['no colon', 'Basic ' + Buffer.from(TEST_CREDENTIALS.username + TEST_CREDENTIALS.password).toString('base64')],
  ])('answers 401 with WWW-Authenticate for %s', async (_name, authorization) => {
    const res = await fetch(`${server.httpUrl}/v1/devices`, { headers: { authorization } });
    await expectError(res, 401, 'UNAUTHORIZED');
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);
  });

  it('lets the right credentials through (scheme case-insensitive)', async () => {
    const right = basic(TEST_CREDENTIALS.username, TEST_CREDENTIALS.password);
    expect((await fetch(`${server.httpUrl}/v1/devices`, { headers: { authorization: right } })).status).toBe(200);
    const lower = right.replace('Basic', 'basic');
    expect((await fetch(`${server.httpUrl}/v1/devices`, { headers: { authorization: lower } })).status).toBe(200);
  });

  it('asks for credentials before revealing whether a route exists', async () => {
    await expectError(await fetch(`${server.httpUrl}/v1/no-such-route`), 401, 'UNAUTHORIZED');
  });
});

describe('probes', () => {
  it('serves /healthz and /readyz without credentials', async () => {
    const health = await fetch(`${server.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${server.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('echoes a well-formed X-Request-Id and makes one up otherwise', async () => {
    const given = await fetch(`${server.httpUrl}/healthz`, { headers: { 'x-request-id': 'trace-123' } });
    expect(given.headers.get('x-request-id')).toBe('trace-123');
    const made = await fetch(`${server.httpUrl}/healthz`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('errors', () => {
  it('answers 404 JSON for an unknown route', async () => {
    const body = await expectError(await server.api('/v1/no-such-route'), 404, 'NOT_FOUND');
    expect(body.error.message).toContain('/v1/no-such-route');
    await expectError(await server.api('/v1/devices', { method: 'DELETE' }), 404, 'NOT_FOUND');
  });

  it('answers 404 JSON for a device that never connected', async () => {
    const body = await expectError(await server.api('/v1/devices/never-seen'), 404, 'NOT_FOUND');
    expect(body.error.message).toContain('never-seen');
  });

  it.each([
    ['/v1/devices?limit=0', 'limit'],
    ['/v1/devices?limit=501', 'limit'],
    ['/v1/devices?limit=ten', 'limit'],
    ['/v1/devices?online=maybe', 'online'],
    [`/v1/devices?cursor=${'c'.repeat(600)}`, 'cursor'],
    ['/v1/devices/dev-1/sessions?cursor=abc', 'cursor'],
    ['/v1/devices/dev-1/sessions?cursor=1.5', 'cursor'],
    ['/v1/devices/dev-1/sessions?limit=-1', 'limit'],
    [`/v1/devices/${'d'.repeat(257)}`, 'deviceId'],
  ])('answers 400 naming the field for %s', async (path, field) => {
    const body = await expectError(await server.api(path), 400, 'VALIDATION_FAILED');
    expect(body.error.message).toMatch(new RegExp(`^${field}\\b`));
  });

  it('answers 400 MALFORMED_JSON for a body that is not JSON', async () => {
    const res = await server.api('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"componentId":' });
    await expectError(res, 400, 'MALFORMED_JSON');
  });

  it(`answers 413 for a body over MAX_MESSAGE_BYTES (${MAX_BODY})`, async () => {
    const big = JSON.stringify({ componentId: 'c1', command: 'x', pad: 'p'.repeat(MAX_BODY) });
    const res = await server.api('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    // Just under the limit is parsed (and then meets the 404 of a route that does not exist).
    const small = JSON.stringify({ pad: 'p'.repeat(MAX_BODY - 20) });
    const ok = await server.api('/v1/devices', { method: 'POST', headers: { 'content-type': 'application/json' }, body: small });
    await expectError(ok, 404, 'NOT_FOUND');
  });
});

describe('devices and sessions', () => {
  let online1: DeviceClient;
  let online2: DeviceClient;

  beforeAll(async () => {
    online1 = await connectAuthenticated(server.wsUrl, 'list-a-online', mint('list-a-online', { accountId: 'acc-a' }));
    online2 = await connectAuthenticated(server.wsUrl, 'list-c-online', mint('list-c-online'));
    devices.push(online1, online2);
    // A device that came and went.
    const gone = await connectAuthenticated(server.wsUrl, 'list-b-offline', mint('list-b-offline'));
    gone.close();
    await eventually(
      () => db.pool.query(`select 1 from device_sessions where device_id = 'list-b-offline' and disconnected_at is not null`),
      (r) => r.rowCount === 1,
    );
  });

  it('GET /v1/devices lists every device with its latest session, ordered by id', async () => {
    const res = await server.api('/v1/devices');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: { deviceId: string; online: boolean; lastSession: Record<string, unknown> }[]; nextCursor: string | null };
    const ours = body.items.filter((d) => d.deviceId.startsWith('list-'));
    expect(ours.map((d) => [d.deviceId, d.online])).toEqual([
      ['list-a-online', true],
      ['list-b-offline', false],
      ['list-c-online', true],
    ]);
    expect(ours[0]!.lastSession).toMatchObject({ deviceId: 'list-a-online', accountId: 'acc-a', instanceId: server.config.instanceId, disconnectedAt: null });
    expect(ours[1]!.lastSession).toMatchObject({ closeCode: 1000, disconnectedAt: expect.any(String) });
    expect(body.nextCursor).toBeNull();
  });

  it('GET /v1/devices?online=true lists only connected devices', async () => {
    const body = (await (await server.api('/v1/devices?online=true')).json()) as { items: { deviceId: string; online: boolean }[] };
    const ours = body.items.filter((d) => d.deviceId.startsWith('list-'));
    expect(ours.map((d) => d.deviceId)).toEqual(['list-a-online', 'list-c-online']);
    expect(body.items.every((d) => d.online)).toBe(true);
  });

  it('GET /v1/devices?online=false lists only devices that are not connected', async () => {
    const body = (await (await server.api('/v1/devices?online=false')).json()) as { items: { deviceId: string; online: boolean }[] };
    expect(body.items.map((d) => d.deviceId)).toContain('list-b-offline');
    expect(body.items.every((d) => !d.online)).toBe(true);
  });

  it('GET /v1/devices pages with limit and cursor', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${encodeURIComponent(cursor)}`;
      const body = (await (await server.api(`/v1/devices${query}`)).json()) as { items: { deviceId: string }[]; nextCursor: string | null };
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items.map((d) => d.deviceId));
      cursor = body.nextCursor;
      if (cursor === null) break;
    }
    const all = (await (await server.api('/v1/devices')).json()) as { items: { deviceId: string }[] };
    expect(seen).toEqual(all.items.map((d) => d.deviceId));
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('GET /v1/devices/:id shows an online device with its current session', async () => {
    const body = (await (await server.api('/v1/devices/list-a-online')).json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      deviceId: 'list-a-online',
      online: true,
      session: { deviceId: 'list-a-online', accountId: 'acc-a', disconnectedAt: null },
      lastSession: { deviceId: 'list-a-online' },
    });
  });

  it('GET /v1/devices/:id shows an offline device with no current session and its last one', async () => {
    const body = (await (await server.api('/v1/devices/list-b-offline')).json()) as Record<string, unknown>;
    expect(body).toMatchObject({ deviceId: 'list-b-offline', online: false, session: null, lastSession: { closeCode: 1000 } });
  });

  it('GET /v1/devices/:id decodes ids that need escaping', async () => {
    const id = 'dev/with space';
    const device = await connectAuthenticated(server.wsUrl, id, mint(id));
    devices.push(device);
    const res = await server.api(`/v1/devices/${encodeURIComponent(id)}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ deviceId: id, online: true });
  });

  it('GET /v1/devices/:id/sessions lists history newest first and pages with the cursor', async () => {
    const deviceId = 'history-dev';
    // Five past sessions of this device, oldest first, then a live one.
    await db.pool.query(
      `insert into device_sessions (device_id, instance_id, connected_at, last_seen_at, disconnected_at, close_code, close_reason)
       select $1, $2, now() - make_interval(hours => 10 - n), now() - make_interval(hours => 10 - n),
              now() - make_interval(hours => 10 - n) + interval '1 minute', 1000, 'past ' || n
         from generate_series(1, 5) as n`,
      [deviceId, server.config.instanceId],
    );
    devices.push(await connectAuthenticated(server.wsUrl, deviceId, mint(deviceId)));

    type Page = { items: { id: number; deviceId: string; disconnectedAt: string | null; closeReason: string | null }[]; nextCursor: string | null };
    const pages: Page[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? '?limit=4' : `?limit=4&cursor=${cursor}`;
      const res = await server.api(`/v1/devices/${deviceId}/sessions${query}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as Page;
      pages.push(page);
      cursor = page.nextCursor;
    } while (cursor !== null && pages.length < 5);

    expect(pages.map((p) => p.items.length)).toEqual([4, 2]);
    const items = pages.flatMap((p) => p.items);
    expect(items.every((s) => s.deviceId === deviceId)).toBe(true);
    expect(items[0]!.disconnectedAt).toBeNull();
    expect(items.slice(1).map((s) => s.closeReason)).toEqual(['past 5', 'past 4', 'past 3', 'past 2', 'past 1']);
    const ids = items.map((s) => s.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));

    const unknown = (await (await server.api('/v1/devices/nobody-at-all/sessions')).json()) as Page;
    expect(unknown).toEqual({ items: [], nextCursor: null });
  });
});

describe('503 DATABASE_UNAVAILABLE when the database goes away', () => {
  it('when the database server stops answering (connections reset, then refused)', async () => {
    const own = await createTestDatabase();
    const direct = new URL(own.url);
    const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port) });
    const proxiedUrl = new URL(own.url);
    proxiedUrl.hostname = '127.0.0.1';
    proxiedUrl.port = String(proxy.port);
    const pool = makePool({ connectionString: proxiedUrl.toString(), max: 4 }, makeLogger({ level: 'silent' }));
    const proxied = await startTestServer({ ...own, url: proxiedUrl.toString(), pool });
    try {
      expect((await proxied.api('/readyz')).status).toBe(200);
      expect((await proxied.api('/v1/devices')).status).toBe(200);

      await proxy.stop();
      await expectError(await fetch(`${proxied.httpUrl}/readyz`), 503, 'DATABASE_UNAVAILABLE');
      await expectError(await proxied.api('/v1/devices'), 503, 'DATABASE_UNAVAILABLE');
      await expectError(await proxied.api('/v1/devices/some-device/sessions'), 503, 'DATABASE_UNAVAILABLE');
      const counted = await proxied.app.metrics.registry.getSingleMetric('iotws_database_errors_total')!.get();
      expect(counted.values.find((v) => v.labels.operation === 'http')?.value).toBeGreaterThanOrEqual(3);
      // The process itself is still up.
      expect((await fetch(`${proxied.httpUrl}/healthz`)).status).toBe(200);

      await proxy.start();
      const ready = await eventually(() => fetch(`${proxied.httpUrl}/readyz`).then((r) => r.status), (s) => s === 200);
      expect(ready).toBe(200);
      expect((await proxied.api('/v1/devices')).status).toBe(200);
    } finally {
      await proxied.close();
      await proxy.stop();
      await pool.end();
      await own.drop();
    }
  });

  it('when the database is dropped or renamed under the server', async () => {
    const own = await createTestDatabase();
    const dropped = await startTestServer(own);
    const admin = new pg.Client(inject('adminDatabaseUrl'));
    await admin.connect();
    const renamed = `${own.name}_away`;
    try {
      expect((await dropped.api('/v1/devices')).status).toBe(200);
      await renameDatabase(admin, own.name, renamed);

      await expectError(await fetch(`${dropped.httpUrl}/readyz`), 503, 'DATABASE_UNAVAILABLE');
      await expectError(await dropped.api('/v1/devices'), 503, 'DATABASE_UNAVAILABLE');
      await expectError(await dropped.api('/v1/devices/x'), 503, 'DATABASE_UNAVAILABLE');

      await renameDatabase(admin, renamed, own.name);
      expect((await dropped.api('/v1/devices')).status).toBe(200);
    } finally {
      await dropped.close();
      await admin.query(`drop database if exists ${renamed} with (force)`);
      await admin.end();
      await own.drop();
    }
  });
});

/** Renames a database that a running server holds connections to: cut them, then rename (retrying if one reconnected in between). */
async function renameDatabase(admin: pg.Client, from: string, to: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [from]);
    try {
      await admin.query(`alter database ${from} rename to ${to}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006' || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
