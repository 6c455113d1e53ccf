/**
 * The device registry against the real server and PostgreSQL: devices recorded by the
 * gateway when they authenticate (first and last seen, the account of their token, a
 * change of account in their answer and session history), also when many connect at once
 * (the batched session statement); PUT and PATCH (JSON merge patch) of registrations;
 * GET filters by tag, account and online, with cursors; tag validation.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_TAGS } from '../../src/devices/schemas.js';
import { connectAuthenticated, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

const t = useTestServer();
const clients: DeviceClient[] = [];
afterAll(() => {
  for (const client of clients) client.close();
});

interface DeviceAnswer {
  deviceId: string;
  accountId: string | null;
  name: string | null;
  tags: Record<string, string>;
  online: boolean;
  registeredAt: string | null;
  firstSeenAt: string | null;
  lastSeenAt: string | null;
  updatedAt: string;
  session: { id: number } | null;
  lastSession: { id: number; accountId: string | null; disconnectedAt: string | null } | null;
  accountChanges: { accountId: string; sessionId: number; at: string }[];
}

const getDevice = async (id: string) => {
  const res = await t.server.api(`/v1/devices/${encodeURIComponent(id)}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as DeviceAnswer;
};
const put = (id: string, json: unknown) => t.server.api(`/v1/devices/${encodeURIComponent(id)}`, { method: 'PUT', json });
const patch = (id: string, json: unknown, contentType = 'application/merge-patch+json') =>
  t.server.api(`/v1/devices/${encodeURIComponent(id)}`, { method: 'PATCH', headers: { 'content-type': contentType }, body: typeof json === 'string' ? json : JSON.stringify(json) });
const closedSession = (id: string) =>
  eventually(() => t.db.pool.query(`select 1 from device_sessions where device_id = $1 and disconnected_at is null`, [id]), (r) => r.rowCount === 0);

describe('devices that authenticate', () => {
  it('are recorded with first and last seen and the account of their token, on connect and on close', async () => {
    const client = await connectAuthenticated(t.server.wsUrl, 'reg-seen', mint('reg-seen', { accountId: 'acme' }));
    const online = await getDevice('reg-seen');
    expect(online).toMatchObject({ accountId: 'acme', online: true, registeredAt: null, name: null, tags: {} });
    expect(online.firstSeenAt).not.toBeNull();
    expect(online.session?.id).toBe(online.lastSession?.id);
    client.close();
    await closedSession('reg-seen');
    const offline = await getDevice('reg-seen');
    expect(offline).toMatchObject({ online: false, session: null, firstSeenAt: online.firstSeenAt });
    expect(Date.parse(offline.lastSeenAt!)).toBeGreaterThanOrEqual(Date.parse(online.lastSeenAt!));
    expect(offline.lastSession?.disconnectedAt).not.toBeNull();
  });

  it('show a change of account (a token of another account) in their answer and their session history; a token without one keeps it', async () => {
    for (const accountId of ['acme', 'globex', undefined]) {
      const client = await connectAuthenticated(t.server.wsUrl, 'reg-moves', mint('reg-moves', accountId ? { accountId } : {}));
      client.close();
      await closedSession('reg-moves');
    }
    const device = await getDevice('reg-moves');
    expect(device.accountId).toBe('globex');
    expect(device.accountChanges.map((c) => c.accountId)).toEqual(['globex', 'acme']);
    const sessions = (await (await t.server.api('/v1/devices/reg-moves/sessions')).json()) as { items: { id: number; accountId: string | null }[] };
    expect(sessions.items.map((s) => s.accountId)).toEqual([null, 'globex', 'acme']);
    expect(device.accountChanges.map((c) => c.sessionId)).toEqual([sessions.items[1]!.id, sessions.items[2]!.id]);
  });

  it('are all recorded when many connect at once (the batched session statement)', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `reg-burst-${String(i).padStart(2, '0')}`);
    const connected = await Promise.all(ids.map((id) => connectAuthenticated(t.server.wsUrl, id, mint(id, { accountId: `burst-${Number(id.slice(-2)) % 2}` }))));
    clients.push(...connected);
    const rows = await t.db.pool.query<{ device_id: string; account_id: string; first_seen_at: Date | null }>(
      `select device_id, account_id, first_seen_at from devices where device_id like 'reg-burst-%' order by device_id`,
    );
    expect(rows.rows.map((r) => [r.device_id, r.account_id])).toEqual(ids.map((id) => [id, `burst-${Number(id.slice(-2)) % 2}`]));
    expect(rows.rows.every((r) => r.first_seen_at !== null)).toBe(true);
    // Whether the statement was batched depends on timing; that every row is there does not.
  });

  it('keep the registration made before they first connected, and take the account of their token', async () => {
    expect((await put('reg-ahead', { name: 'freezer 1', accountId: 'acme', tags: { site: 'berlin' } })).status).toBe(201);
    const before = await getDevice('reg-ahead');
    expect(before).toMatchObject({ online: false, lastSession: null, session: null, firstSeenAt: null, accountChanges: [] });
    const client = await connectAuthenticated(t.server.wsUrl, 'reg-ahead', mint('reg-ahead', { accountId: 'globex' }));
    clients.push(client);
    const after = await getDevice('reg-ahead');
    expect(after).toMatchObject({ name: 'freezer 1', tags: { site: 'berlin' }, accountId: 'globex', online: true, registeredAt: before.registeredAt });
    expect(after.firstSeenAt).not.toBeNull();
  });
});

describe('PUT /v1/devices/:id', () => {
  it('creates (201) a device that never connected, then replaces its registration (200): what is absent is cleared', async () => {
    const created = await put('reg-put', { name: 'n1', accountId: 'acme', tags: { site: 'berlin', model: 'f2' } });
    expect(created.status).toBe(201);
    expect((await created.json()) as object).toMatchObject({ deviceId: 'reg-put', name: 'n1', accountId: 'acme', tags: { site: 'berlin', model: 'f2' }, online: false });
    const replaced = await put('reg-put', { tags: { site: 'paris' } });
    expect(replaced.status).toBe(200);
    expect((await replaced.json()) as object).toMatchObject({ name: null, accountId: null, tags: { site: 'paris' } });
    const device = await getDevice('reg-put');
    expect(device.registeredAt).not.toBeNull();
  });

  it.each([
    [{ tags: { 'has:colon': 'x' } }, 'tags'],
    [{ tags: { '': 'x' } }, 'tags'],
    [{ tags: { ['k'.repeat(65)]: 'x' } }, 'tags'],
    [{ tags: { ok: 'v'.repeat(257) } }, 'tags.ok'],
    [{ tags: { ok: '' } }, 'tags.ok'],
    [{ tags: { ok: 'line\nbreak' } }, 'tags.ok'],
    [{ tags: { ok: 'nul\u0000' } }, 'tags.ok'],
    [{ tags: { ok: 1 } }, 'tags.ok'],
    [{ tags: { nested: { a: 'b' } } }, 'tags.nested'],
    [{ tags: Object.fromEntries(Array.from({ length: MAX_TAGS + 1 }, (_, i) => [`k${i}`, 'v'])) }, 'tags'],
    [{ name: '' }, 'name'],
    [{ accountId: 'a'.repeat(257) }, 'accountId'],
    [{ color: 'red' }, 'body'],
  ])('refuses %j (400 naming %s)', async (body, field) => {
    const res = await put('reg-bad', body);
    expect(res.status).toBe(400);
    const error = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('VALIDATION_FAILED');
    expect(error.message.startsWith(field)).toBe(true);
  });

  it('accepts exactly MAX_TAGS tags, with keys of every allowed character and values with spaces, colons and non-ASCII', async () => {
    const tags = Object.fromEntries(Array.from({ length: MAX_TAGS }, (_, i) => [`Key_${i}.a-b/c`, `v: ${i} ü 🧊`]));
    expect((await put('reg-max-tags', { tags })).status).toBe(201);
    expect((await getDevice('reg-max-tags')).tags).toEqual(tags);
  });
});

describe('PATCH /v1/devices/:id (JSON merge patch)', () => {
  it('keeps absent members, removes null ones, merges tags; application/merge-patch+json and application/json', async () => {
    await put('reg-patch', { name: 'n', accountId: 'acme', tags: { a: '1', b: '2' } });
    const res = await patch('reg-patch', { tags: { b: null, c: '3' } });
    expect(res.status).toBe(200);
    expect((await res.json()) as object).toMatchObject({ name: 'n', accountId: 'acme', tags: { a: '1', c: '3' } });
    expect((await patch('reg-patch', { name: null }, 'application/json')).status).toBe(200);
    expect(await getDevice('reg-patch')).toMatchObject({ name: null, accountId: 'acme', tags: { a: '1', c: '3' } });
    expect((await patch('reg-patch', { tags: null, accountId: 'globex' })).status).toBe(200);
    expect(await getDevice('reg-patch')).toMatchObject({ accountId: 'globex', tags: {} });
    // Keys special to JavaScript objects: `constructor` is a tag like any other; `__proto__`, which an object
    // would drop silently on the way, is refused.
    expect((await patch('reg-patch', '{"tags":{"constructor":"y"}}')).status).toBe(200);
    const { rows } = await t.db.pool.query<{ tags: string }>(`select tags::text from devices where device_id = 'reg-patch'`);
    expect(rows[0]!.tags).toBe('{"constructor": "y"}');
    expect((await patch('reg-patch', '{"tags":{"__proto__":"x"}}')).status).toBe(400);
    expect((await put('reg-patch', JSON.parse('{"tags":{"__proto__":"x"}}'))).status).toBe(400);
  });

  it('refuses tags beyond MAX_TAGS after merging (nothing changes), other media types, and unknown devices', async () => {
    await put('reg-patch-full', { tags: Object.fromEntries(Array.from({ length: MAX_TAGS }, (_, i) => [`k${i}`, 'v'])) });
    const over = await patch('reg-patch-full', { tags: { extra: 'v' } });
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: { message: string } }).error.message).toMatch(/^tags: at most 32 tags/);
    expect(Object.keys((await getDevice('reg-patch-full')).tags)).toHaveLength(MAX_TAGS);
    // Replacing one tag by another fits.
    expect((await patch('reg-patch-full', { tags: { k0: null, extra: 'v' } })).status).toBe(200);
    expect((await patch('reg-patch-full', { name: 'x' }, 'application/vnd.other+json')).status).toBe(415);
    const unknown = await patch('reg-never', { name: 'x' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});

describe('GET /v1/devices', () => {
  const ids = async (query: string) => {
    const res = await t.server.api(`/v1/devices?${query}`);
    expect(res.status, await res.clone().text()).toBe(200);
    return ((await res.json()) as { items: { deviceId: string }[] }).items.map((d) => d.deviceId).filter((id) => id.startsWith('flt-'));
  };

  it('filters by every tag given, by account and by online, in device id order, and pages with the cursor', async () => {
    await put('flt-1', { accountId: 'acme', tags: { site: 'berlin', model: 'f2' } });
    await put('flt-2', { accountId: 'acme', tags: { site: 'berlin', model: 'f3' } });
    await put('flt-3', { accountId: 'globex', tags: { site: 'berlin', model: 'f2' } });
    await put('flt-4', { accountId: 'globex', tags: { site: 'paris', model: 'f2' } });
    clients.push(await connectAuthenticated(t.server.wsUrl, 'flt-4', mint('flt-4', { accountId: 'globex' })));
    expect(await ids('tag=site:berlin')).toEqual(['flt-1', 'flt-2', 'flt-3']);
    expect(await ids('tag=site:berlin&tag=model:f2')).toEqual(['flt-1', 'flt-3']);
    expect(await ids('tag=model:f2&accountId=globex')).toEqual(['flt-3', 'flt-4']);
    expect(await ids('tag=model:f2&online=true')).toEqual(['flt-4']);
    expect(await ids('tag=model:f2&online=false')).toEqual(['flt-1', 'flt-3']);
    expect(await ids('tag=site:nowhere')).toEqual([]);
    expect(await ids('accountId=acme&cursor=flt-1')).toEqual(['flt-2']);
    const first = (await (await t.server.api('/v1/devices?tag=model:f2&limit=2')).json()) as { items: { deviceId: string }[]; nextCursor: string };
    expect(first.items.map((d) => d.deviceId)).toEqual(['flt-1', 'flt-3']);
    const second = (await (await t.server.api(`/v1/devices?tag=model:f2&limit=2&cursor=${first.nextCursor}`)).json()) as { items: { deviceId: string }[]; nextCursor: string | null };
    expect(second.items.map((d) => d.deviceId)).toEqual(['flt-4']);
    expect(second.nextCursor).toBeNull();
  });

  it.each(['tag=nocolon', 'tag=bad%20key:v', 'tag=k:', `tag=k:${'v'.repeat(257)}`, 'accountId=', 'online=yes', Array.from({ length: 33 }, (_, i) => `tag=k${i}:v`).join('&')])(
    'refuses the filter %s (400)',
    async (query) => {
      const res = await t.server.api(`/v1/devices?${query}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('VALIDATION_FAILED');
    },
  );

  it('answers the tag filter from the GIN index, the account filter from its index', async () => {
    // Enough rows and fresh statistics that the planner would rather not scan.
    await t.db.pool.query(`insert into devices (device_id, tags, account_id) select 'plan-' || i, jsonb_build_object('n', i::text), 'plan-' || (i % 100) from generate_series(1, 5000) i`);
    await t.db.pool.query('analyze devices');
    const plan = async (where: string) =>
      JSON.stringify((await t.db.pool.query(`explain (format json) select device_id from devices d where ${where} order by device_id limit 50`)).rows);
    expect(await plan(`d.tags @> '{"n":"42"}'::jsonb`)).toContain('devices_tags_idx');
    expect(await plan(`d.account_id = 'plan-7'`)).toContain('devices_account_idx');
  });
});
