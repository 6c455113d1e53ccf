/**
 * API key rate limits against the real server: a key over its own limit gets 429
 * RATE_LIMITED with Retry-After and recovers after it; keys without their own limit get
 * API_KEY_RATE_LIMIT; another key and the bootstrap administrator are not limited by
 * it; and with two instances on one database each enforces half of the limit (its
 * share), so a key gets its limit across them.
 *
 * Checked to fail without the mechanism: with `app.use(rateLimit(...))` removed from
 * api.ts every request is 200 (the first three tests fail), and with the share's divisor
 * fixed at 1 in rate-limit.ts the instance test counts 20 successes on one instance.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  // A small default, to see it apply to keys without their own limit.
  server = await startTestServer(db, { API_KEY_RATE_LIMIT: '1/3' });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

async function createKey(on: TestServer, extra: Record<string, unknown> = {}): Promise<{ id: string; key: string; rateLimit: unknown }> {
  const res = await on.api('/v1/api-keys', { method: 'POST', json: { name: 'limited', scopes: ['devices:read'], ...extra } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { id: string; key: string; rateLimit: unknown };
}

const asKey = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

/** Statuses of `n` requests sent one after the other. */
async function statuses(on: TestServer, n: number, init: RequestInit = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await on.api('/v1/devices', init)).status);
  return out;
}

describe('a key over its rate limit', () => {
  it('gets 429 RATE_LIMITED with Retry-After beyond its burst, and is served again after it', async () => {
    const key = await createKey(server, { rateLimit: { perSecond: 1, burst: 5 } });
    expect(key.rateLimit).toEqual({ perSecond: 1, burst: 5 });
    // The burst, then refused (a refill of 1/s adds at most a request or two while these run).
    const got = await statuses(server, 12, asKey(key.key));
    expect(got.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(got.filter((s) => s === 429).length).toBeGreaterThanOrEqual(5);
    const refused = await server.api('/v1/devices', asKey(key.key));
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(Number.isInteger(retryAfter)).toBe(true);
    // Retry-After is a promise: once it has passed, the key is served again (waiting longer only adds tokens).
    await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000));
    expect((await server.api('/v1/devices', asKey(key.key))).status).toBe(200);
  });

  it('does not slow down another key, nor the bootstrap administrator (HTTP Basic)', async () => {
    const flooder = await createKey(server, { rateLimit: { perSecond: 1, burst: 2 } });
    const other = await createKey(server, { rateLimit: { perSecond: 1, burst: 4 } });
    expect((await statuses(server, 6, asKey(flooder.key))).filter((s) => s === 429).length).toBeGreaterThanOrEqual(3);
    expect((await statuses(server, 4, asKey(other.key))).slice(0, 4)).toEqual([200, 200, 200, 200]);
    // The bootstrap administrator is not limited at all (README, "Rate limits").
    expect(new Set(await statuses(server, 20))).toEqual(new Set([200]));
  });

  it('without a limit of its own, gets API_KEY_RATE_LIMIT (here 1/s, burst 3)', async () => {
    const key = await createKey(server);
    expect(key.rateLimit).toBeNull();
    const got = await statuses(server, 8, asKey(key.key));
    expect(got.slice(0, 3)).toEqual([200, 200, 200]);
    expect(got.filter((s) => s === 429).length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a bad rateLimit with 400', async () => {
    for (const rateLimit of [{ perSecond: 0 }, { perSecond: 1.5 }, { perSecond: 10, burst: 0 }, { burst: 5 }, 10]) {
      const res = await server.api('/v1/api-keys', { method: 'POST', json: { name: 'bad', scopes: ['devices:read'], rateLimit } });
      expect(res.status, JSON.stringify(rateLimit)).toBe(400);
    }
  });
});

describe('two instances on one database', () => {
  it('each enforce half of the limit (their share), so the key gets its limit across both', async () => {
    const shared = await createTestDatabase();
    const a = await startTestServer(shared, { INSTANCE_ID: 'rate-a', INSTANCE_HEARTBEAT_MS: '200' });
    const b = await startTestServer(shared, { INSTANCE_ID: 'rate-b', INSTANCE_HEARTBEAT_MS: '200' });
    try {
      // Both have beaten (and counted the live instances after the beat) since both exist.
      const { rows } = await shared.pool.query<{ now: Date }>('select now()');
      const since = rows[0]!.now;
      await eventually(
        async () => (await shared.pool.query(`select count(*)::int as n from instances where last_heartbeat_at > $1::timestamptz + interval '500 milliseconds'`, [since])).rows[0].n,
        (n) => n === 2,
        15_000,
      );
      const key = await createKey(a, { rateLimit: { perSecond: 1, burst: 20 } });
      // Each instance: a burst of 10 and 0.5 requests/s.
      const onA = (await statuses(a, 20, asKey(key.key))).filter((s) => s === 200).length;
      const onB = (await statuses(b, 20, asKey(key.key))).filter((s) => s === 200).length;
      for (const served of [onA, onB]) {
        expect(served).toBeGreaterThanOrEqual(10);
        // 10 plus what 0.5/s refills during the 20 requests: far below the 20 one instance alone would allow.
        expect(served).toBeLessThan(16);
      }
    } finally {
      await a.close();
      await b.close();
      await shared.drop();
    }
  });
});
