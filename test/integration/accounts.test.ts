/**
 * API keys limited to accounts, against the real server and PostgreSQL: every route a
 * limited key can reach (all of them but the global scopes', which such a key cannot hold)
 * × a key of account A, a key of account B and a key without a limit. A key of A cannot
 * read, list, page into, cancel, bulk-post or be told about anything of B (nor of a device
 * with no account): each such answer is compared, byte for byte once the id is replaced by
 * a placeholder, with the answer for something that does not exist at all.
 *
 * How this was checked to guard the mechanism: with `deviceVisibleSql` and
 * `accountVisibleSql` (src/devices/account-scope.ts) returning 'true' for every scope, and
 * with the submit routes' `commandable` check removed, every test of "a key of one
 * account" below fails (B's device, session and actuation are then shown to A, and A's
 * submits to B's device are accepted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GLOBAL_SCOPES } from '../../src/keys/scopes.js';
import { connectAuthenticated, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer, type TestServer } from '../helpers/server.js';

const t = useTestServer();

const DEVICE_SCOPES = ['actuations:write', 'actuations:read', 'devices:read', 'devices:write'];
const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

async function createKey(server: TestServer, body: Record<string, unknown>): Promise<{ id: string; key: string; accounts: string[] | null }> {
  const res = await server.api('/v1/api-keys', { method: 'POST', json: { name: 'accounts test', scopes: DEVICE_SCOPES, ...body } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { id: string; key: string; accounts: string[] | null };
}

type Who = 'A' | 'B' | 'all';
const keys = {} as Record<Who, string>;
let keyIdA = '';
/** The things of each account: a device that connected once, and its (queued) actuation. */
const things = {
  A: { device: 'acct-a-dev', actuation: '' },
  B: { device: 'acct-b-dev', actuation: '' },
  none: { device: 'acct-none-dev', actuation: '' },
};
/** Ids nobody has: the answers for B's things must be the answers for these. */
const MISSING_DEVICE = 'acct-no-such-dev';
const MISSING_ACTUATION = '00000000-0000-7000-8000-000000000000';
const clients: DeviceClient[] = [];

function call(who: Who, path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  return t.server.api(path, { ...init, headers: { authorization: `Bearer ${keys[who]}`, ...(init.headers as Record<string, string> | undefined) } });
}

/** Status and body, with `id` replaced by a placeholder: what a caller can tell apart. */
async function seen(res: Response, id: string): Promise<{ status: number; body: string }> {
  return { status: res.status, body: (await res.text()).replaceAll(id, '<id>') };
}

beforeAll(async () => {
  const keyA = await createKey(t.server, { accounts: ['acme'] });
  keys.A = keyA.key;
  keyIdA = keyA.id;
  keys.B = (await createKey(t.server, { accounts: ['globex'] })).key;
  keys.all = (await createKey(t.server, {})).key;
  // Devices record their account from their tokens; one token names none.
  clients.push(await connectAuthenticated(t.server.wsUrl, things.A.device, mint(things.A.device, { accountId: 'acme' })));
  clients.push(await connectAuthenticated(t.server.wsUrl, things.B.device, mint(things.B.device, { accountId: 'globex' })));
  clients.push(await connectAuthenticated(t.server.wsUrl, things.none.device, mint(things.none.device)));
  // Offline from here on, so that what is posted to them stays queued.
  for (const client of clients) client.close();
  await eventually(() => t.db.pool.query('select 1 from device_sessions where disconnected_at is null'), (r) => r.rowCount === 0);
  // Two actuations each, posted without a limit; the second one's id is kept.
  for (const thing of Object.values(things)) {
    for (let i = 0; i < 2; i++) {
      const res = await call('all', `/v1/devices/${thing.device}/actuations`, { method: 'POST', json: command });
      expect(res.status).toBe(202);
      thing.actuation = ((await res.json()) as { id: string; status: string }).id;
    }
  }
});

afterAll(() => {
  for (const client of clients) client.close();
});

describe('API keys limited to accounts', () => {
  it('are created with `accounts`, shown in listings, and refused the global scopes (400)', async () => {
    const key = await createKey(t.server, { accounts: ['acme', 'globex', 'acme'] });
    expect(key.accounts).toEqual(['acme', 'globex']);
    const listed = (await (await t.server.api('/v1/api-keys')).json()) as { items: { id: string; accounts: string[] | null }[] };
    expect(listed.items.find((k) => k.id === key.id)?.accounts).toEqual(['acme', 'globex']);
    expect((await (await t.server.api(`/v1/api-keys/${key.id}`)).json()) as object).toMatchObject({ accounts: ['acme', 'globex'] });
    for (const scope of GLOBAL_SCOPES) {
      const res = await t.server.api('/v1/api-keys', { method: 'POST', json: { name: 'global', scopes: ['devices:read', scope], accounts: ['acme'] } });
      expect(res.status, scope).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('VALIDATION_FAILED');
      expect(body.error.message).toContain(`"${scope}"`);
    }
    for (const accounts of [[], [''], ['a\u0000b'], ['tab\there']]) {
      const res = await t.server.api('/v1/api-keys', { method: 'POST', json: { name: 'bad', scopes: ['devices:read'], accounts } });
      expect(res.status, JSON.stringify(accounts)).toBe(400);
    }
  });
});

describe('a key of one account', () => {
  it('reads its own device and is told nothing about another account\'s, or one without an account', async () => {
    expect((await call('A', `/v1/devices/${things.A.device}`)).status).toBe(200);
    const missing = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}`), MISSING_DEVICE);
    expect(missing.status).toBe(404);
    for (const other of [things.B.device, things.none.device]) {
      expect(await seen(await call('A', `/v1/devices/${other}`), other)).toEqual(missing);
      expect((await call('all', `/v1/devices/${other}`)).status).toBe(200);
    }
    expect((await call('B', `/v1/devices/${things.B.device}`)).status).toBe(200);
  });

  it('lists only its devices, whatever the filter or the cursor it pages from', async () => {
    const list = async (who: Who, query: string) => ((await (await call(who, `/v1/devices?${query}`)).json()) as { items: { deviceId: string }[] }).items.map((d) => d.deviceId);
    expect(await list('A', '')).toEqual([things.A.device]);
    expect(await list('A', 'accountId=globex')).toEqual([]);
    expect(await list('A', 'online=false')).toEqual([things.A.device]);
    expect(await list('A', 'online=true')).toEqual([]);
    // A cursor just before B's device (as if paging into B's devices): still only A's after it.
    expect(await list('A', `cursor=${'acct-a-dev~'}`)).toEqual([]);
    expect(await list('A', 'cursor=acct-')).toEqual([things.A.device]);
    // Page by page, one device a page: never another account's.
    const pages: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page = (await (await call('A', `/v1/devices?limit=1${cursor ? `&cursor=${cursor}` : ''}`)).json()) as { items: { deviceId: string }[]; nextCursor: string | null };
      pages.push(...page.items.map((d) => d.deviceId));
      cursor = page.nextCursor;
    }
    expect(pages).toEqual([things.A.device]);
    expect(await list('B', '')).toEqual([things.B.device]);
    expect(await list('all', 'cursor=acct-')).toEqual([things.A.device, things.B.device, things.none.device]);
  });

  it('sees no sessions of another account\'s device: the answer of a device that never connected, with or without a cursor', async () => {
    const own = (await (await call('A', `/v1/devices/${things.A.device}/sessions`)).json()) as { items: unknown[] };
    expect(own.items).toHaveLength(1);
    for (const query of ['', '?cursor=999999999', '?limit=1']) {
      const missing = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}/sessions${query}`), MISSING_DEVICE);
      expect(missing).toEqual({ status: 200, body: JSON.stringify({ items: [], nextCursor: null }) });
      for (const other of [things.B.device, things.none.device]) expect(await seen(await call('A', `/v1/devices/${other}/sessions${query}`), other)).toEqual(missing);
    }
  });

  it('lists no actuations of another account\'s device, with or without a cursor or a status', async () => {
    const own = (await (await call('A', `/v1/devices/${things.A.device}/actuations`)).json()) as { items: unknown[] };
    expect(own.items).toHaveLength(2);
    for (const query of ['', '?cursor=3', '?status=queued', '?limit=1']) {
      const missing = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}/actuations${query}`), MISSING_DEVICE);
      expect(missing).toEqual({ status: 200, body: JSON.stringify({ items: [], nextCursor: null }) });
      for (const other of [things.B.device, things.none.device]) expect(await seen(await call('A', `/v1/devices/${other}/actuations${query}`), other)).toEqual(missing);
    }
    expect(((await (await call('all', `/v1/devices/${things.B.device}/actuations`)).json()) as { items: unknown[] }).items).toHaveLength(2);
  });

  it('reads and cancels no actuation of another account: 404 as for one that does not exist, and nothing changes', async () => {
    expect((await call('A', `/v1/actuations/${things.A.actuation}`)).status).toBe(200);
    const missingGet = await seen(await call('A', `/v1/actuations/${MISSING_ACTUATION}`), MISSING_ACTUATION);
    const missingCancel = await seen(await call('A', `/v1/actuations/${MISSING_ACTUATION}`, { method: 'DELETE' }), MISSING_ACTUATION);
    expect(missingGet.status).toBe(404);
    expect(missingCancel.status).toBe(404);
    for (const other of [things.B.actuation, things.none.actuation]) {
      expect(await seen(await call('A', `/v1/actuations/${other}`), other)).toEqual(missingGet);
      expect(await seen(await call('A', `/v1/actuations/${other}`, { method: 'DELETE' }), other)).toEqual(missingCancel);
      const still = await t.db.pool.query<{ status: string }>('select status from actuations where id = $1', [other]);
      expect(still.rows[0]?.status).toBe('queued');
    }
    // Its own it can cancel; the key without a limit cancels any.
    expect((await call('A', `/v1/actuations/${things.A.actuation}`, { method: 'DELETE' })).status).toBe(200);
    expect((await call('all', `/v1/actuations/${things.none.actuation}`, { method: 'DELETE' })).status).toBe(200);
  });

  it('posts no actuation to another account\'s device: 404 as for a device that does not exist, and nothing is added', async () => {
    const count = async () => Number((await t.db.pool.query<{ n: string }>('select count(*) as n from actuations')).rows[0]!.n);
    const before = await count();
    const post = (who: Who, device: string, headers: Record<string, string> = {}) => call(who, `/v1/devices/${device}/actuations`, { method: 'POST', json: command, headers });
    const missing = await seen(await post('A', MISSING_DEVICE), MISSING_DEVICE);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toEqual({ error: { code: 'NOT_FOUND', message: 'Device "<id>" is not known' } });
    for (const other of [things.B.device, things.none.device]) {
      expect(await seen(await post('A', other), other)).toEqual(missing);
      expect(await seen(await post('A', other, { 'idempotency-key': 'probe-1' }), other)).toEqual(missing);
    }
    expect(await count()).toBe(before);
    // An account it does not hold cannot be named in the actuation either.
    const named = await call('A', `/v1/devices/${things.A.device}/actuations`, { method: 'POST', json: { ...command, accountId: 'globex' } });
    expect(named.status).toBe(400);
    expect(await count()).toBe(before);
    expect((await post('A', things.A.device)).status).toBe(202);
    expect((await post('all', MISSING_DEVICE)).status).toBe(202);
  });

  it('bulk-posts only to its devices: the others\' items are 404 exactly as an unknown device\'s', async () => {
    const res = await call('A', '/v1/actuations', {
      method: 'POST',
      json: [things.A.device, things.B.device, things.none.device, MISSING_DEVICE].map((deviceId) => ({ deviceId, ...command })),
    });
    expect(res.status).toBe(200);
    const { results } = (await res.json()) as { results: { index: number; status: number; error?: { code: string; message: string } }[] };
    expect(results.map((r) => r.status)).toEqual([202, 404, 404, 404]);
    const errorOf = (i: number, id: string) => JSON.stringify(results[i]!.error).replaceAll(id, '<id>');
    expect(errorOf(1, things.B.device)).toBe(errorOf(3, MISSING_DEVICE));
    expect(errorOf(2, things.none.device)).toBe(errorOf(3, MISSING_DEVICE));
    // And the single submit's error body is the same as a bulk item's.
    const single = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}/actuations`, { method: 'POST', json: command }), MISSING_DEVICE);
    expect(JSON.parse(single.body).error).toEqual(JSON.parse(errorOf(3, MISSING_DEVICE)));
    const added = await t.db.pool.query<{ device_id: string }>(`select device_id from actuations where source->>'caller' = $1`, [`apikey:${keyIdA}`]);
    // A's own posts (this test's bulk item and the single one of the test before), nothing else.
    expect(added.rows.map((r) => r.device_id)).toEqual([things.A.device, things.A.device]);
  });

  it('changes no registration of another account: PUT and PATCH answer 404 as for an unknown device', async () => {
    const missing = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}-patch`, { method: 'PATCH', json: { name: 'x' } }), `${MISSING_DEVICE}-patch`);
    expect(missing.status).toBe(404);
    for (const other of [things.B.device, things.none.device]) {
      expect(await seen(await call('A', `/v1/devices/${other}`, { method: 'PATCH', json: { name: 'mine now' } }), other)).toEqual(missing);
      expect(await seen(await call('A', `/v1/devices/${other}`, { method: 'PUT', json: { name: 'mine now', accountId: 'acme' } }), other)).toEqual(missing);
    }
    const b = (await (await call('all', `/v1/devices/${things.B.device}`)).json()) as { name: string | null; accountId: string };
    expect(b).toMatchObject({ name: null, accountId: 'globex' });
    // It registers devices into its own account, and only there.
    const put = await call('A', '/v1/devices/acct-a-registered', { method: 'PUT', json: { name: 'ahead', tags: { site: 'berlin' } } });
    expect(put.status).toBe(201);
    expect((await put.json()) as object).toMatchObject({ accountId: 'acme', online: false, lastSession: null });
    const elsewhere = await call('A', '/v1/devices/acct-a-elsewhere', { method: 'PUT', json: { accountId: 'globex' } });
    expect(elsewhere.status).toBe(400);
    expect((await call('A', '/v1/devices/acct-a-registered', { method: 'PATCH', json: { accountId: null } })).status).toBe(400);
    expect((await call('B', '/v1/devices/acct-a-registered')).status).toBe(404);
  });
});

describe('a device that changes account', () => {
  it('moves, with its actuations and sessions, from the old account\'s keys to the new one\'s when a token names the new account', async () => {
    const id = 'acct-moving-dev';
    const connectAs = async (accountId: string) => {
      const client = await connectAuthenticated(t.server.wsUrl, id, mint(id, { accountId }));
      client.close();
      await eventually(() => t.db.pool.query('select 1 from device_sessions where device_id = $1 and disconnected_at is null', [id]), (r) => r.rowCount === 0);
    };
    await connectAs('acme');
    const posted = await call('A', `/v1/devices/${id}/actuations`, { method: 'POST', json: command });
    expect(posted.status).toBe(202);
    const actuation = ((await posted.json()) as { id: string }).id;
    expect((await call('B', `/v1/actuations/${actuation}`)).status).toBe(404);
    await connectAs('globex');
    expect((await call('A', `/v1/devices/${id}`)).status).toBe(404);
    expect((await call('A', `/v1/actuations/${actuation}`)).status).toBe(404);
    expect((await call('B', `/v1/actuations/${actuation}`)).status).toBe(200);
    const device = (await (await call('B', `/v1/devices/${id}`)).json()) as { accountId: string; accountChanges: { accountId: string }[] };
    expect(device.accountId).toBe('globex');
    expect(device.accountChanges.map((c) => c.accountId)).toEqual(['globex', 'acme']);
    const sessions = (await (await call('B', `/v1/devices/${id}/sessions`)).json()) as { items: { accountId: string }[] };
    expect(sessions.items.map((s) => s.accountId)).toEqual(['globex', 'acme']);
  });
});

describe('a key without a limit and the bootstrap administrator', () => {
  it('see every device, session and actuation, of every account and of none', async () => {
    for (const thing of Object.values(things)) {
      expect((await call('all', `/v1/devices/${thing.device}`)).status).toBe(200);
      expect((await t.server.api(`/v1/devices/${thing.device}`)).status).toBe(200);
      expect((await t.server.api(`/v1/actuations/${thing.actuation}`)).status).toBe(200);
      const sessions = (await (await t.server.api(`/v1/devices/${thing.device}/sessions`)).json()) as { items: unknown[] };
      expect(sessions.items).toHaveLength(1);
    }
  });
});
