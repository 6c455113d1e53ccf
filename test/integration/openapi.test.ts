/**
 * Keeps the OpenAPI document true: every route the app serves is in it and nothing else,
 * every described body is validated (an empty one is refused with 400 naming a
 * field), and every example is accepted; every operation declares its success body and
 * its errors, a real linter (Redocly) finds nothing, and the reference page is served.
 * (Every answer the integration tests get through `server.api()` is checked against
 * the document by `test/helpers/openapi-check.ts`.)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { API_ERRORS } from '../../src/http/errors.js';
import { openApiDocument, ROUTES } from '../../src/http/openapi.js';
import { checkAgainstDocument } from '../helpers/openapi-check.js';
import { useTestServer } from '../helpers/server.js';

const t = useTestServer();

describe('OpenAPI document', () => {
  it('is served as OpenAPI 3.1 without credentials', async () => {
    const res = await fetch(`${t.server.httpUrl}/v1/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, any>> };
    expect(doc.openapi).toBe('3.1.0');
    const post = doc.paths['/v1/devices/{deviceId}/actuations']!.post;
    expect(post.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['componentId', 'command']));
    expect(post.parameters.map((p: { name: string }) => p.name)).toEqual(['deviceId', 'Idempotency-Key']);
  });

  it('describes exactly the routes the app serves', () => {
    const documented = ROUTES.map((r) => `${r.method} ${r.path}`).sort();
    expect([...t.server.app.httpRoutes].sort()).toEqual(documented);
  });

  it('validates every described body and accepts every example', async () => {
    for (const route of ROUTES.filter((r) => r.body)) {
      const path = route.path.replace(':deviceId', 'openapi-dev').replace(':id', '00000000-0000-4000-8000-000000000000');
      const empty = await t.server.api(path, { method: route.method.toUpperCase(), json: {} });
      if (route.body!.safeParse({}).success) {
        // A body whose every member is optional (PUT/PATCH of a device registration): `{}` is valid.
        expect(empty.status, `${route.method} ${route.path} with {}`).toBeLessThan(300);
      } else {
        expect(empty.status, `${route.method} ${route.path} with {}`).toBe(400);
        const error = ((await empty.json()) as { error: { code: string } }).error;
        expect(error.code).toBe('VALIDATION_FAILED');
      }
      if (route.example !== undefined) {
        const ok = await t.server.api(path, { method: route.method.toUpperCase(), json: route.example });
        expect(ok.status, `${route.method} ${route.path} with its example`).toBeLessThan(300);
      }
    }
  });
});

describe('OpenAPI document for generated clients', () => {
  const doc = openApiDocument() as {
    info: { license?: { name: string } };
    servers?: unknown[];
    paths: Record<string, Record<string, { operationId?: string; responses: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }> }>>;
    components: { schemas: Record<string, { properties: { error: { properties: { code: { enum: string[] } } } } }> };
  };
  const operations = Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).map(([m, op]) => ({ name: `${m} ${p}`, op })));

  it('has unique operationIds, servers and a licence', () => {
    const ids = operations.map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(doc.servers?.length).toBeGreaterThan(0);
    expect(doc.info.license?.name).toBe('Apache-2.0');
  });

  it('describes every success body with a schema, and every error in the catalogue shape', () => {
    for (const { name, op } of operations) {
      const statuses = Object.keys(op.responses).map(Number);
      const success = statuses.filter((s) => s < 300);
      expect(success.length, name).toBeGreaterThan(0);
      for (const status of success.filter((s) => s !== 204)) {
        const content = op.responses[status]!.content;
        expect(content && Object.values(content)[0]?.schema, `${name} ${status}`).toBeDefined();
      }
      for (const status of [500, 503]) expect(statuses, name).toContain(status);
      for (const status of statuses.filter((s) => s >= 400)) {
        expect(op.responses[status]!.content?.['application/json']?.schema, `${name} ${status}`).toEqual({ $ref: `#/components/schemas/Error${status}` });
      }
    }
    // Each error schema lists exactly the catalogue's codes of its status.
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      const status = Number(name.replace('Error', ''));
      const codes = Object.entries(API_ERRORS).filter(([, e]) => e.status === status).map(([code]) => code);
      expect(schema.properties.error.properties.code.enum, name).toEqual(codes);
    }
    const authenticated = operations.filter((o) => !('security' in o.op));
    for (const { name, op } of authenticated) for (const status of [400, 401, 413, 415]) expect(Object.keys(op.responses), name).toContain(String(status));
  });

  it('refuses answers that do not match it (the check the integration tests rely on can fail)', () => {
    const actuation = '/v1/actuations/00000000-0000-4000-8000-000000000000';
    expect(checkAgainstDocument('GET', actuation, 404, 'application/json', JSON.stringify({ error: { code: 'NOT_FOUND', message: 'x' } }))).toEqual([]);
    expect(checkAgainstDocument('GET', actuation, 404, 'application/json', JSON.stringify({ error: { code: 'CONFLICT', message: 'x' } }))).toHaveLength(1);
    expect(checkAgainstDocument('GET', actuation, 418, 'application/json', '{}')[0]).toMatch(/does not declare/);
    expect(checkAgainstDocument('GET', '/v1/devices', 200, 'application/json', JSON.stringify({ items: [], nextCursor: null, extra: 1 }))).toHaveLength(1);
    expect(checkAgainstDocument('GET', '/v1/devices', 200, 'application/json', JSON.stringify({ items: [] }))).toHaveLength(1);
    expect(checkAgainstDocument('GET', '/healthz', 200, 'text/plain', 'ok')[0]).toMatch(/Content-Type/);
  });

  it('lints clean with Redocly (recommended rules, no warnings)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'openapi-lint-'));
    try {
      const file = path.join(dir, 'openapi.json');
      await fs.writeFile(file, JSON.stringify(doc));
      const bin = path.resolve('node_modules/.bin/redocly');
      const { stdout } = await promisify(execFile)(bin, ['lint', '--format=json', file], { timeout: 60_000, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } });
      const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: unknown[] };
      expect(report.problems).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('serves a reference page, without a CDN, that renders the document', async () => {
    const res = await t.server.api('/v1/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain("fetch(new URL('openapi.json'");
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)=["']?(https?:)?\/\//);
    // Without credentials too, like the document it renders.
    expect((await fetch(`${t.server.httpUrl}/v1/docs`)).status).toBe(200);
  });

  it("the reference page's script finds the document from /v1/docs and /v1/docs/", async () => {
    const html = await (await fetch(`${t.server.httpUrl}/v1/docs`)).text();
    const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
    // The script's URL expression, evaluated with each address the page is served at.
    const expression = /fetch\((new URL\([^;]*?\))\)\.then/.exec(script)![1]!;
    for (const at of ['/v1/docs', '/v1/docs/']) {
      const location = new URL(at, t.server.httpUrl);
      const url = new Function('location', `return ${expression};`)(location) as URL;
      expect(url.pathname, at).toBe('/v1/openapi.json');
      expect((await fetch(url)).status, at).toBe(200);
    }
  });
});
