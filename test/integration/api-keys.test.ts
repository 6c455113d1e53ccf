/**
 * API keys and scopes against the real server and PostgreSQL: every route of the route
 * table with a key holding exactly its scope (allowed) and a key holding every other
 * scope (403 naming the scope); `admin` keys and the bootstrap administrator (HTTP
 * Basic) pass everywhere; expired, revoked, unknown and malformed keys are 401;
 * revocation reaches a second instance within KEY_CACHE_MS; the secret is stored only
 * as its SHA-256 and never logged; `npm run keys` creates, lists and revokes.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { authorize } from '../../src/http/auth.js';
import { ROUTES } from '../../src/http/openapi.js';
import { KEY_CACHE_MS } from '../../src/keys/key-verifier.js';
import { SCOPES, type Scope } from '../../src/keys/scopes.js';
import { eventually } from '../helpers/eventually.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer, useTestServer, type TestServer } from '../helpers/server.js';

const t = useTestServer();

/**
 * The scope of every authenticated operation, written out here on purpose: the route
 * table is checked against it, so a scope changed or dropped in the table fails this test.
 */
const EXPECTED_SCOPES: Record<string, Scope> = {
  getMetrics: 'metrics:read',
  streamEvents: 'events:read',
  listDevices: 'devices:read',
  getDevice: 'devices:read',
  putDevice: 'devices:write',
  patchDevice: 'devices:write',
  listDeviceSessions: 'devices:read',
  submitActuation: 'actuations:write',
  listDeviceActuations: 'actuations:read',
  submitActuations: 'actuations:write',
  getActuation: 'actuations:read',
  cancelActuation: 'actuations:write',
  createStream: 'dss:admin',
  listStreams: 'dss:admin',
  getStream: 'dss:admin',
  updateStream: 'dss:admin',
  deleteStream: 'dss:admin',
  listStreamEvents: 'dss:admin',
  getDssDeviceState: 'dss:admin',
  createRule: 'dss:admin',
  listRules: 'dss:admin',
  getRule: 'dss:admin',
  updateRule: 'dss:admin',
  deleteRule: 'dss:admin',
  createApiKey: 'keys:admin',
  listApiKeys: 'keys:admin',
  getApiKey: 'keys:admin',
  revokeApiKey: 'keys:admin',
  createJob: 'jobs:write',
  listJobs: 'jobs:read',
  getJob: 'jobs:read',
  listJobActuations: 'jobs:read',
  cancelJob: 'jobs:write',
  createSchedule: 'jobs:write',
  listSchedules: 'jobs:read',
  getSchedule: 'jobs:read',
  updateSchedule: 'jobs:write',
  deleteSchedule: 'jobs:write',
  revokeDeviceTokens: 'devices:write',
  listAuditEntries: 'admin',
  createWebhook: 'webhooks:admin',
  listWebhooks: 'webhooks:admin',
  getWebhook: 'webhooks:admin',
  updateWebhook: 'webhooks:admin',
  deleteWebhook: 'webhooks:admin',
  listWebhookDeliveries: 'webhooks:admin',
  testWebhook: 'webhooks:admin',
};

interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  scopes: string[];
}

async function createKey(server: TestServer, scopes: readonly string[], extra: Record<string, unknown> = {}): Promise<CreatedKey> {
  const res = await server.api('/v1/api-keys', { method: 'POST', json: { name: `test ${scopes.join(' ')}`.slice(0, 100), scopes, ...extra } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as CreatedKey;
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** The route's request with placeholders filled in; bodies are `{}` (a 400 is fine: it is past authorization). */
function call(server: TestServer, route: (typeof ROUTES)[number], headers: Record<string, string>): Promise<Response> {
  // The change feed would stream forever: a position not given yet is answered (400) once past its scope.
  const url = route.path.replace(':deviceId', 'matrix-dev').replace(':id', '00000000-0000-4000-8000-000000000000') + (route.operationId === 'streamEvents' ? '?after=999999999999' : '');
  const method = route.method.toUpperCase();
  return server.api(url, { method, headers, ...(method === 'POST' || method === 'PUT' || method === 'PATCH' ? { json: {} } : {}) });
}

const authRoutes = ROUTES.filter((r) => r.auth);

describe('the route table', () => {
  it('gives every authenticated operation its scope (and only those in EXPECTED_SCOPES)', () => {
    expect(Object.fromEntries(authRoutes.map((r) => [r.operationId, r.scope]))).toEqual(EXPECTED_SCOPES);
  });

  it('cannot hold an authenticated route without a scope: the server refuses to start', () => {
    const route = { method: 'get', path: '/v1/forgotten', operationId: 'forgotten', summary: 'x', auth: true, responses: { 200: 'ok' } } as const;
    expect(() => authorize([...ROUTES, route])).toThrow('route GET /v1/forgotten declares no scope');
    expect(() => authorize(ROUTES)).not.toThrow();
  });

  it('documents each scope in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${t.server.httpUrl}/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, { 'x-required-scope'?: string; description?: string; responses: Record<string, unknown> }>> };
    for (const route of authRoutes) {
      const op = doc.paths[route.path.replace(/:(\w+)/g, '{$1}')]![route.method]!;
      expect(op['x-required-scope'], route.operationId).toBe(EXPECTED_SCOPES[route.operationId]);
      expect(op.description).toContain(`\`${EXPECTED_SCOPES[route.operationId]}\``);
      expect(op.responses['403'], route.operationId).toBeDefined();
    }
  });
});

describe('scopes', () => {
  it('let a key with exactly the route scope through, and refuse one with every other scope (403 naming it)', async () => {
    const only = new Map<Scope, CreatedKey>();
    const allBut = new Map<Scope, CreatedKey>();
    for (const scope of SCOPES.filter((s) => s !== 'admin')) {
      only.set(scope, await createKey(t.server, [scope]));
      allBut.set(scope, await createKey(t.server, SCOPES.filter((s) => s !== 'admin' && s !== scope)));
    }
    // Routes that need `admin` itself (the audit log): an admin key, and one with every other scope.
    only.set('admin', await createKey(t.server, ['admin']));
    allBut.set('admin', await createKey(t.server, SCOPES.filter((s) => s !== 'admin')));
    const failures: string[] = [];
    for (const route of authRoutes) {
      const scope = EXPECTED_SCOPES[route.operationId]!;
      const allowed = await call(t.server, route, bearer(only.get(scope)!.key));
      if (allowed.status === 401 || allowed.status === 403) failures.push(`${route.operationId} with only ${scope}: ${allowed.status} ${await allowed.text()}`);
      const refused = await call(t.server, route, bearer(allBut.get(scope)!.key));
      const body = (await refused.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
      if (refused.status !== 403 || body?.error?.code !== 'FORBIDDEN' || !body.error.message.includes(`"${scope}"`)) {
        failures.push(`${route.operationId} without ${scope}: ${refused.status} ${JSON.stringify(body)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('let an admin key and the bootstrap administrator (HTTP Basic) through everywhere', async () => {
    const admin = await createKey(t.server, ['admin']);
    const failures: string[] = [];
    for (const route of authRoutes) {
      for (const [who, headers] of [['admin key', bearer(admin.key)], ['basic', {}]] as const) {
        const res = await call(t.server, route, headers);
        if (res.status === 401 || res.status === 403) failures.push(`${route.operationId} as ${who}: ${res.status}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('close a path the route table does not describe to everyone but admin', async () => {
    const devices = await createKey(t.server, ['devices:read']);
    const res = await t.server.api('/v1/devices-but-not-quite', { headers: bearer(devices.key) });
    expect(res.status).toBe(403);
  });

  it('let a key grant only scopes it holds itself', async () => {
    const keysAdmin = await createKey(t.server, ['keys:admin', 'devices:read']);
    const stronger = await t.server.api('/v1/api-keys', { method: 'POST', headers: bearer(keysAdmin.key), json: { name: 'escalate', scopes: ['admin'] } });
    expect(stronger.status).toBe(403);
    expect(((await stronger.json()) as { error: { message: string } }).error.message).toContain('"admin"');
    const weaker = await t.server.api('/v1/api-keys', { method: 'POST', headers: bearer(keysAdmin.key), json: { name: 'reader', scopes: ['devices:read'] } });
    expect(weaker.status).toBe(201);
  });
});

describe('API keys', () => {
  it('are answered once with their secret, then listed and read without it', async () => {
    const created = await createKey(t.server, ['devices:read'], { expiresInDays: 30 });
    expect(created.key).toMatch(/^iotws_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.key.startsWith(`${created.prefix}_`)).toBe(true);
    const listed = (await (await t.server.api('/v1/api-keys')).json()) as { items: Record<string, unknown>[] };
    const item = listed.items.find((k) => k.id === created.id)!;
    expect(item).toMatchObject({ prefix: created.prefix, scopes: ['devices:read'], revokedAt: null });
    expect(Date.parse(item.expiresAt as string) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(JSON.stringify(listed)).not.toContain(created.key.slice(created.prefix.length + 1));
    const one = (await (await t.server.api(`/v1/api-keys/${created.id}`)).json()) as Record<string, unknown>;
    expect(one.key).toBeUndefined();
    expect((await t.server.api('/v1/api-keys/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('are stored only as the SHA-256 of their secret', async () => {
    const created = await createKey(t.server, ['devices:read']);
    const secret = created.key.slice(created.prefix.length + 1);
    const { rows } = await t.db.pool.query<{ row: string; secret_hash: Buffer }>('select row_to_json(k)::text as row, secret_hash from api_keys k where id = $1', [created.id]);
    expect(rows[0]!.row).not.toContain(secret);
    expect(rows[0]!.row).not.toContain(Buffer.from(secret).toString('hex'));
    expect(rows[0]!.secret_hash.equals(crypto.createHash('sha256').update(secret).digest())).toBe(true);
  });

  it('refuse malformed, unknown, wrong-secret, expired and revoked keys with 401', async () => {
    const good = await createKey(t.server, ['devices:read']);
    const status = async (authorization: string) => (await t.server.api('/v1/devices', { headers: { authorization } })).status;
    expect(await status(`Bearer ${good.key}`)).toBe(200);
    expect(await status('Bearer not-a-key')).toBe(401);
    expect(await status(`Bearer ${good.key}x`)).toBe(401);
    expect(await status(`Bearer iotws_0123456789abcdef_${'A'.repeat(43)}`)).toBe(401);
    expect(await status(`Bearer ${good.prefix}_${'B'.repeat(43)}`)).toBe(401);

    const expiring = await createKey(t.server, ['devices:read'], { expiresInDays: 1 });
    await t.db.pool.query(`update api_keys set expires_at = now() - interval '1 second' where id = $1`, [expiring.id]);
    const expired = await t.server.api('/v1/devices', { headers: bearer(expiring.key) });
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as { error: { message: string } }).error.message).toContain('expired');

    expect((await t.server.api(`/v1/api-keys/${good.id}`, { method: 'DELETE' })).status).toBe(200);
    const revoked = await eventually(() => t.server.api('/v1/devices', { headers: bearer(good.key) }), (r) => r.status === 401, KEY_CACHE_MS + 3_000);
    expect(((await revoked.json()) as { error: { message: string } }).error.message).toContain('revoked');
    const again = (await (await t.server.api(`/v1/api-keys/${good.id}`, { method: 'DELETE' })).json()) as { revokedAt: string };
    expect(again.revokedAt).not.toBeNull();
  });

  it('record their last use at most once a minute', async () => {
    const key = await createKey(t.server, ['devices:read']);
    expect((await t.server.api('/v1/devices', { headers: bearer(key.key) })).status).toBe(200);
    const lastUsed = async () => ((await (await t.server.api(`/v1/api-keys/${key.id}`)).json()) as { lastUsedAt: string | null }).lastUsedAt;
    const first = await eventually(lastUsed, (v) => v !== null, 5_000);
    await new Promise((r) => setTimeout(r, 50));
    expect((await t.server.api('/v1/devices', { headers: bearer(key.key) })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(await lastUsed()).toBe(first);
  });

  it('open /metrics with metrics:read', async () => {
    const reader = await createKey(t.server, ['metrics:read']);
    const res = await fetch(`${t.server.httpUrl}/metrics`, { headers: bearer(reader.key) });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('# HELP');
  });
});

describe('revocation on another instance', () => {
  let second: TestServer | undefined;
  afterAll(async () => {
    await second?.close();
  });

  it(`is refused there within KEY_CACHE_MS (${KEY_CACHE_MS} ms)`, async () => {
    second = await startTestServer(t.db);
    const key = await createKey(t.server, ['devices:read']);
    // The second instance has read (and cached) the key before it is revoked.
    expect((await second.api('/v1/devices', { headers: bearer(key.key) })).status).toBe(200);
    expect((await t.server.api(`/v1/api-keys/${key.id}`, { method: 'DELETE' })).status).toBe(200);
    const revokedAt = Date.now();
    await eventually(() => second!.api('/v1/devices', { headers: bearer(key.key) }), (r) => r.status === 401, KEY_CACHE_MS + 5_000);
    const took = Date.now() - revokedAt;
    // The bound plus a generous allowance for a loaded machine (one request's round trip).
    expect(took).toBeLessThan(KEY_CACHE_MS + 1_500);
  });
});

describe('logs', () => {
  it('never contain a key or its secret', async () => {
    const { sink, lines } = captureLog();
    const logged = await startTestServer(t.db, { LOG_LEVEL: 'trace' }, { logDestination: sink });
    try {
      const created = await createKey(logged, ['devices:read']);
      expect((await logged.api('/v1/devices', { headers: bearer(created.key) })).status).toBe(200);
      expect((await logged.api('/v1/devices', { headers: bearer(`${created.key}x`) })).status).toBe(401);
      expect((await logged.api('/v1/api-keys', { headers: bearer(created.key) })).status).toBe(403);
      await logged.api(`/v1/api-keys/${created.id}`, { method: 'DELETE' });
      const text = lines.join('');
      expect(text.length).toBeGreaterThan(0);
      expect(text).toContain(created.id);
      expect(text).not.toContain(created.key.slice(created.prefix.length + 1));
    } finally {
      await logged.close();
    }
  });
});

describe('npm run keys', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'keys-cli-'));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  async function keysCli(args: string[], env: Record<string, string> = { DATABASE_URL: t.db.url }): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const [runner, entry] = pkg.scripts.keys!.split(' ');
    expect(runner).toBe('tsx');
    const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [entry!, ...args], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: dataDir, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    return { code, stdout, stderr };
  }

  it('creates a key that works, lists it and revokes it', async () => {
    const created = await keysCli(['create', '--name', 'billing', '--scopes', 'actuations:write,actuations:read', '--expires-in-days', '7', '--rate-limit', '50/80', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as CreatedKey & { name: string; expiresAt: string };
    expect(key).toMatchObject({ name: 'billing', scopes: ['actuations:write', 'actuations:read'], rateLimit: { perSecond: 50, burst: 80 } });
    expect(key.expiresAt).not.toBeNull();
    expect((await t.server.api('/v1/devices/dev-x/actuations', { headers: bearer(key.key) })).status).toBe(200);
    expect((await t.server.api('/v1/devices', { headers: bearer(key.key) })).status).toBe(403);

    const listed = await keysCli(['list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`${key.id}\\s+${key.prefix}\\s+billing\\s+\\[actuations:write,actuations:read\\]\\s+active until \\S+\\s+50/s burst 80`));
    expect(listed.stdout).not.toContain(key.key);

    const revoked = await keysCli(['revoke', key.id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain('revoked');
    await eventually(() => t.server.api('/v1/devices/dev-x/actuations', { headers: bearer(key.key) }), (r) => r.status === 401, KEY_CACHE_MS + 3_000);

    const unknown = await keysCli(['revoke', '00000000-0000-4000-8000-000000000000']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no API key');
  });

  it('creates a key limited to accounts (--accounts), shown in its listing', async () => {
    const created = await keysCli(['create', '--name', 'tenant', '--scopes', 'devices:read', '--accounts', 'acme,globex', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as CreatedKey & { accounts: string[] };
    expect(key.accounts).toEqual(['acme', 'globex']);
    const listed = await keysCli(['list']);
    expect(listed.stdout).toMatch(new RegExp(`${key.id}.*accounts acme,globex`));
  });

  it('prints the key once in its text form', async () => {
    const created = await keysCli(['create', '--name', 'ops', '--scopes', 'devices:read']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^iotws_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/m);
    expect(created.stdout).toContain('only time');
  });

  it('talks to the running server without DATABASE_URL (the embedded database)', async () => {
    const env = { API_USERNAME: 'tester', API_PASSWORD: 'test-password-123' };
    const created = await keysCli(['create', '--name', 'via-rest', '--scopes', 'devices:read', '--json', '--url', t.server.httpUrl], env);
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as CreatedKey;
    expect((await t.server.api('/v1/devices', { headers: bearer(key.key) })).status).toBe(200);
    const listed = await keysCli(['list', '--url', t.server.httpUrl], env);
    expect(listed.stdout).toContain(key.id);
  });

  it.each([
    [['create', '--scopes', 'devices:read'], /needs --name/],
    [['create', '--name', 'x', '--scopes', 'devices:reed'], /--scopes: each must be one of/],
    [['create', '--name', 'x', '--scopes', 'admin', '--expires-in-days', '0'], /--expires-in-days must be/],
    [['create', '--name', 'x', '--scopes', 'devices:read,dss:admin', '--accounts', 'acme'], /--scopes: "dss:admin" is not account-limited/],
    [['create', '--name', 'x', '--scopes', 'admin', '--rate-limit', 'fast'], /--rate-limit must be <requests per second>/],
    [['create', '--name', 'x', '--scopes', 'admin', '--rate-limit', '0'], /--rate-limit: /],
    [['revoke', 'not-a-uuid'], /is not a key id/],
    [['rotate'], /unknown command "rotate"/],
    [[], /give a command/],
  ])('exits 64 on bad arguments: %j', async (args, message) => {
    const result = await keysCli(args);
    expect(result.code).toBe(64);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain('usage: npm run -s keys');
    expect(result.stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});
