/**
 * The audit log against the real server and PostgreSQL: every mutating route of the
 * route table leaves one entry (who, method, route template, targets, status, request
 * id, remote address, time), refused calls too; no secret reaches it (API keys, the
 * Basic password, a DSS stream key, bodies); `GET /v1/audit` filters and pages, for
 * `admin` only; retention deletes old entries; and while the database is unavailable
 * entries wait (bounded), then are written once.
 *
 * Checked to fail without the mechanism: with `app.use(auditTrail(...))` removed from
 * api.ts the first test finds no entries (EventuallyTimeout), and with the retry in
 * audit-log.ts turned into a drop the outage test finds none of the three entries.
 */
import crypto from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';
import { makeAuditLog } from '../../src/audit/audit-log.js';
import type { AuditEntry } from '../../src/audit/audit-sql.js';
import { makePool } from '../../src/db/pool.js';
import { retentionPass } from '../../src/db/retention.js';
import { ROUTES } from '../../src/http/openapi.js';
import { makeLogger } from '../../src/logger.js';
import { eventually } from '../helpers/eventually.js';
import { TEST_CREDENTIALS, useTestServer } from '../helpers/server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const t = useTestServer();

interface AuditRow {
  id: string;
  actor_kind: string;
  key_id: string | null;
  actor: string | null;
  method: string;
  route: string;
  targets: Record<string, unknown>;
  status: number;
  request_id: string;
  remote_address: string | null;
  at: Date;
}

async function entriesFor(requestIds: string[]): Promise<AuditRow[]> {
  const { rows } = await t.db.pool.query<AuditRow>('select * from audit_log where request_id = any($1) order by id', [requestIds]);
  return rows;
}

/** Waits until every request id has its entry (they are written after the answer, in batches). */
function written(requestIds: string[]): Promise<AuditRow[]> {
  return eventually(() => entriesFor(requestIds), (rows) => new Set(rows.map((r) => r.request_id)).size === requestIds.length, 15_000);
}

async function createKey(scopes: string[]): Promise<{ id: string; key: string; prefix: string }> {
  const res = await t.server.api('/v1/api-keys', { method: 'POST', json: { name: `audit ${scopes.join(',')}`, scopes } });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; key: string; prefix: string };
}

const command = { componentId: 'c', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

describe('the audit log', () => {
  it('records every mutating route of the route table, with the key, template, targets, status and request id', async () => {
    const admin = await createKey(['admin']);
    const mutating = ROUTES.filter((r) => r.auth && r.method !== 'get');
    expect(mutating.length).toBeGreaterThanOrEqual(12);
    const calls: { route: (typeof mutating)[number]; requestId: string; status: number }[] = [];
    for (const route of mutating) {
      const url = route.path.replace(':deviceId', 'audit-dev').replace(':id', '00000000-0000-4000-8000-000000000000');
      const method = route.method.toUpperCase();
      const res = await t.server.api(url, {
        method,
        headers: { authorization: `Bearer ${admin.key}` },
        ...(method === 'POST' || method === 'PATCH' ? { json: route.example ?? {} } : {}),
      });
      calls.push({ route, requestId: res.headers.get('x-request-id')!, status: res.status });
    }
    const rows = await written(calls.map((c) => c.requestId));
    for (const call of calls) {
      const row = rows.find((r) => r.request_id === call.requestId)!;
      expect(row, call.route.operationId).toMatchObject({
        actor_kind: 'key',
        key_id: admin.id,
        actor: 'audit admin',
        method: call.route.method.toUpperCase(),
        route: call.route.path,
        status: call.status,
        remote_address: expect.stringMatching(/127\.0\.0\.1/),
      });
      if (call.route.path.includes(':deviceId')) expect(row.targets.deviceId, call.route.operationId).toBe('audit-dev');
      if (call.route.path.includes(':id')) expect(row.targets.id, call.route.operationId).toBe('00000000-0000-4000-8000-000000000000');
    }
    // What a call created is named by its id; a bulk call by its devices.
    const submitted = rows.find((r) => r.route === '/v1/devices/:deviceId/actuations')!;
    expect(submitted.status).toBe(202);
    expect(submitted.targets.createdId).toMatch(/^[0-9a-f-]{36}$/);
    expect(rows.find((r) => r.route === '/v1/actuations' && r.method === 'POST')!.targets).toMatchObject({ deviceIds: ['dev-1', 'dev-2'], items: 2 });
  });

  it('records the bootstrap administrator, refused credentials (anonymous) and refused scopes, never reads', async () => {
    const reader = await createKey(['devices:read']);
    const basic = await t.server.api('/v1/devices/audit-basic/actuations', { method: 'POST', json: command });
    const anonymous = await t.server.api('/v1/devices/audit-anon/actuations', { method: 'POST', headers: { authorization: 'Basic ' + Buffer.from('someone:wrong-password').toString('base64') }, json: command });
    const forbidden = await t.server.api('/v1/devices/audit-403/actuations', { method: 'POST', headers: { authorization: `Bearer ${reader.key}` }, json: command });
    const read = await t.server.api('/v1/devices');
    const ids = [basic, anonymous, forbidden].map((r) => r.headers.get('x-request-id')!);
    const rows = await written(ids);
    expect(rows.map((r) => [r.actor_kind, r.actor, r.status, r.targets.deviceId])).toEqual([
      ['bootstrap', TEST_CREDENTIALS.username, 202, 'audit-basic'],
      // The user name a refused caller tried is not kept.
      ['anonymous', null, 401, 'audit-anon'],
      ['key', 'audit devices:read', 403, 'audit-403'],
    ]);
    expect(await entriesFor([read.headers.get('x-request-id')!])).toEqual([]);
  });

  it('never holds a secret: API keys, the Basic password, a stream key, bodies', async () => {
    const admin = await createKey(['admin']);
    const created = await t.server.api('/v1/api-keys', { method: 'POST', headers: { authorization: `Bearer ${admin.key}` }, json: { name: 'secretive', scopes: ['devices:read'] } });
    const createdKey = ((await created.json()) as { key: string }).key;
    const streamKey = 'streamkey-' + crypto.randomBytes(12).toString('hex');
    const stream = await t.server.api('/v1/dss/streams', { method: 'POST', json: { name: 'audited', url: 'wss://stream.example.com/stream', streamKey, enabled: false } });
    expect(stream.status).toBe(201);
    const marker = 'body-marker-' + crypto.randomBytes(8).toString('hex');
    const posted = await t.server.api('/v1/devices/audit-secret/actuations', { method: 'POST', headers: { authorization: `Bearer ${admin.key}` }, json: { ...command, params: [{ name: 'p', value: marker }] } });
    await written([created, stream, posted].map((r) => r.headers.get('x-request-id')!));
    const { rows } = await t.db.pool.query<{ all: string }>(`select string_agg(row_to_json(a)::text, E'\\n') as all from audit_log a`);
    const everything = rows[0]!.all;
    const secretOf = (key: string) => key.split('_').slice(2).join('_');
    for (const secret of [secretOf(createdKey), secretOf(admin.key), TEST_CREDENTIALS.password, Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64'), streamKey, marker]) {
      expect(everything).not.toContain(secret);
    }
  });
});

describe('GET /v1/audit', () => {
  it('filters by key and time, pages with the cursor, and needs admin', async () => {
    const admin = await createKey(['admin']);
    const auth = { authorization: `Bearer ${admin.key}` };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.server.api(`/v1/devices/audit-page-${i}/actuations`, { method: 'POST', headers: auth, json: command });
      ids.push(res.headers.get('x-request-id')!);
    }
    await written(ids);
    const first = await t.server.api(`/v1/audit?keyId=${admin.id}&limit=2`, { headers: auth });
    expect(first.status).toBe(200);
    const page1 = (await first.json()) as { items: { requestId: string; keyId: string; route: string }[]; nextCursor: string | null };
    expect(page1.items.map((e) => e.requestId)).toEqual(ids.slice(0, 2));
    expect(page1.items.every((e) => e.keyId === admin.id && e.route === '/v1/devices/:deviceId/actuations')).toBe(true);
    const page2 = (await (await t.server.api(`/v1/audit?keyId=${admin.id}&limit=2&cursor=${page1.nextCursor}`, { headers: auth })).json()) as { items: { requestId: string }[]; nextCursor: string | null };
    expect(page2.items.map((e) => e.requestId)).toEqual(ids.slice(2));
    expect(page2.nextCursor).toBeNull();
    const future = (await (await t.server.api(`/v1/audit?since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`)).json()) as { items: unknown[] };
    expect(future.items).toEqual([]);
    const all = (await (await t.server.api(`/v1/audit?since=2000-01-01T00:00:00Z&limit=500`)).json()) as { items: unknown[] };
    expect(all.items.length).toBeGreaterThanOrEqual(3);

    const keysAdmin = await createKey(['keys:admin', 'devices:read', 'devices:write', 'actuations:read', 'actuations:write', 'dss:admin', 'metrics:read']);
    const refused = await t.server.api('/v1/audit', { headers: { authorization: `Bearer ${keysAdmin.key}` } });
    expect(refused.status).toBe(403);
    expect((await t.server.api('/v1/audit?cursor=12')).status).toBe(400);
    expect((await t.server.api('/v1/audit?keyId=nope')).status).toBe(400);
    expect((await t.server.api('/v1/audit?since=yesterday')).status).toBe(400);
  });
});

describe('retention', () => {
  it('deletes entries older than RETENTION_DAYS and keeps the others', async () => {
    // Ids are UUIDv7 of the entries' times, as the server makes them.
    const old = Array.from({ length: 5 }, (_, i) => uuidv7({ msecs: Date.now() - 40 * 86_400_000 + i }));
    await t.db.pool.query(
      `insert into audit_log (id, at, actor_kind, method, route, status, request_id)
       select id, now() - interval '40 days', 'anonymous', 'POST', '/v1/old', 401, 'old' from unnest($1::uuid[]) id`,
      [old],
    );
    const { rows: before } = await t.db.pool.query<{ n: number }>(`select count(*)::int as n from audit_log where at > now() - interval '1 day'`);
    const pass = await retentionPass(t.db.pool, { retentionDays: 30, batchSize: 2, pauseMs: 0 });
    expect(pass.audit).toBe(5);
    const { rows } = await t.db.pool.query<{ old: number; recent: number }>(
      `select count(*) filter (where route = '/v1/old')::int as old, count(*) filter (where at > now() - interval '1 day')::int as recent from audit_log`,
    );
    expect(rows[0]).toEqual({ old: 0, recent: before[0]!.n });
  });
});

describe('while the database is unavailable', () => {
  const entry = (requestId: string, extra: Partial<AuditEntry> = {}): AuditEntry => ({
    id: uuidv7(),
    at: new Date(),
    actorKind: 'anonymous',
    keyId: null,
    actor: null,
    method: 'POST',
    route: '/v1/outage',
    targets: {},
    status: 202,
    requestId,
    remoteAddress: '127.0.0.1',
    ...extra,
  });
  const logger = makeLogger({ level: 'silent' });
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('keeps up to maxPending entries, drops (and counts) the rest, and writes the kept ones once when it is back', async () => {
    const direct = new URL(t.db.url);
    const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port) });
    const url = new URL(t.db.url);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    const pool = makePool({ connectionString: url.toString(), max: 2, timeoutMs: 500 }, logger);
    cleanups.push(async () => {
      proxy.forward();
      await pool.end();
      await proxy.stop();
    });
    const dropped: string[] = [];
    const audit = makeAuditLog({ pool, logger, flushTimeoutMs: 500, maxPending: 3, retryMs: 200, onDropped: (reason, n) => dropped.push(`${reason}:${n}`) });
    proxy.blackhole('both');
    const ids = ['outage-1', 'outage-2', 'outage-3', 'outage-4', 'outage-5'].map((id) => `${id}-${crypto.randomBytes(3).toString('hex')}`);
    ids.forEach((id) => audit.record(entry(id)));
    expect(dropped).toEqual(['full:1', 'full:1']);
    // Flushes time out meanwhile (500 ms each, retried every 200 ms); nothing is written, the entries wait.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await entriesFor(ids)).toEqual([]);
    proxy.forward();
    const rows = await written(ids.slice(0, 3));
    // Once each, though flushes that timed out may have committed when the held bytes went through.
    await audit.drain();
    expect((await entriesFor(ids)).map((r) => r.request_id).sort()).toEqual(ids.slice(0, 3).sort());
    expect(rows.length).toBe(3);
    await audit.close();
  });

  it('lets an entry the database refuses fail alone beside valid ones in its batch', async () => {
    const dropped: string[] = [];
    const audit = makeAuditLog({ pool: t.db.pool, logger, flushTimeoutMs: 5_000, onDropped: (reason, n) => dropped.push(`${reason}:${n}`) });
    const ids = ['mixed-1', 'mixed-2', 'mixed-3'].map((id) => `${id}-${crypto.randomBytes(3).toString('hex')}`);
    audit.record(entry(ids[0]!));
    audit.record(entry(ids[1]!, { keyId: 'not-a-uuid' }));
    audit.record(entry(ids[2]!, { actor: 'nul\u0000 and \ud800 are made storable' }));
    await audit.drain();
    expect((await entriesFor(ids)).map((r) => r.request_id)).toEqual([ids[0], ids[2]]);
    expect(dropped).toEqual(['refused:1']);
    await audit.close();
  });
});
