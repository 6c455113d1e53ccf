/**
 * Keeps the OpenAPI document true: every express route is in it and nothing else,
 * every described body is validated (an empty one is refused with 400 naming a
 * field), and every example is accepted.
 */
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../../src/http/openapi.js';
import { useTestServer } from '../helpers/server.js';

const t = useTestServer();

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Every method+path the express app answers, from its router stack. */
function expressRoutes(app: { router: { stack: Layer[] } }): string[] {
  const found: string[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) found.push(`${method} ${layer.route.path}`);
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk(app.router.stack);
  // A route may be registered twice (the bulk endpoint's own body parser, then its handler).
  return [...new Set(found)].sort();
}

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
    const app = t.server.app.server.listeners('request')[0] as unknown as { router: { stack: Layer[] } };
    const documented = ROUTES.map((r) => `${r.method} ${r.path}`).sort();
    expect(expressRoutes(app)).toEqual(documented);
  });

  it('validates every described body and accepts every example', async () => {
    for (const route of ROUTES.filter((r) => r.body)) {
      const path = route.path.replace(':deviceId', 'openapi-dev').replace(':id', '00000000-0000-4000-8000-000000000000');
      const empty = await t.server.api(path, { method: route.method.toUpperCase(), json: {} });
      expect(empty.status, `${route.method} ${route.path} with {}`).toBe(400);
      const error = ((await empty.json()) as { error: { code: string } }).error;
      expect(error.code).toBe('VALIDATION_FAILED');
      if (route.example !== undefined) {
        const ok = await t.server.api(path, { method: route.method.toUpperCase(), json: route.example });
        expect(ok.status, `${route.method} ${route.path} with its example`).toBeLessThan(300);
      }
    }
  });
});
