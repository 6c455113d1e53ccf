/**
 * The database misbehaving under a running server, through a real TCP proxy
 * (test/helpers/tcp-proxy.ts) to the real PostgreSQL: blackholed (nothing answers,
 * sockets stay open), silently lost LISTEN connection, refused, all backends terminated.
 * DATABASE_TIMEOUT_MS is 1 s here, so every bound is a few seconds.
 *
 * How each was shown to fail without its mechanism (disabled, run, restored):
 * - blackhole: without `query_timeout` in db/pool.ts the POST never answered (the
 *   fetch's own 15 s abort fired) and /readyz hung;
 * - LISTEN: without the probe in db/notification-listener.ts the actuation never reached
 *   the device (the dispatcher's poll is set to 10 minutes, so only a new LISTEN
 *   connection's nudgeAll can deliver it);
 * - acks: with the retry in actuations/acks.ts removed, the ack sent during the outage
 *   was dropped and the actuation stayed `sent`;
 * - presumed dead: without the `onSessionsLost` call in gateway/instance-liveness.ts the
 *   device's socket on the cut-off instance was never closed (its session row was).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePool, type Pool } from '../../src/db/pool.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const TIMEOUT_MS = 1_000;
const env = { DATABASE_TIMEOUT_MS: String(TIMEOUT_MS) };
const command = { componentId: 'c', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** A URL of `db` through a new proxy. */
async function proxied(target: TestDatabase): Promise<{ proxy: TcpProxy; url: string }> {
  const direct = new URL(target.url);
  const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port) });
  const url = new URL(target.url);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return { proxy, url: url.toString() };
}

/** A server whose pool and LISTEN connection both go through one proxy. */
async function startProxiedServer(extraEnv: Record<string, string> = {}): Promise<{ proxy: TcpProxy; server: TestServer; pool: Pool; close(): Promise<void> }> {
  const { proxy, url } = await proxied(db);
  const pool = makePool({ connectionString: url, max: 4, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
  const server = await startTestServer({ ...db, url, pool }, { ...env, ...extraEnv });
  return {
    proxy,
    server,
    pool,
    async close() {
      proxy.forward();
      await server.close();
      await proxy.stop();
      await pool.end();
    },
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

/** `promise`, or a rejection after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms))]);
}

async function statusOf(id: string): Promise<string> {
  const { rows } = await db.pool.query<{ status: string }>('select status from actuations where id = $1', [id]);
  return rows[0]!.status;
}

describe('a blackholed database (nothing answers, sockets stay open)', () => {
  it.each(['both', 'toTarget', 'fromTarget'] as const)('(%s) answers 503 DATABASE_UNAVAILABLE within the timeout, fails /readyz, passes /healthz, and recovers without a restart', async (direction) => {
    const s = await startProxiedServer();
    try {
      const post = () =>
        s.server.api('/v1/devices/blackhole-1/actuations', { method: 'POST', json: command, signal: AbortSignal.timeout(15_000) });
      expect((await post()).status).toBe(202);
      expect((await fetch(`${s.server.httpUrl}/readyz`)).status).toBe(200);

      s.proxy.blackhole(direction);
      for (let i = 0; i < 3; i++) {
        // Each: a pooled connection whose query never answers, or a connect that never completes.
        const { value: res, ms } = await timed(post);
        expect(res.status).toBe(503);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('DATABASE_UNAVAILABLE');
        expect(ms).toBeLessThan(TIMEOUT_MS + 1_500);
      }
      const { value: ready, ms: readyMs } = await timed(() => fetch(`${s.server.httpUrl}/readyz`, { signal: AbortSignal.timeout(15_000) }));
      expect(ready.status).toBe(503);
      expect(readyMs).toBeLessThan(TIMEOUT_MS + 1_500);
      // Liveness does not depend on the database.
      const { value: live, ms: liveMs } = await timed(() => fetch(`${s.server.httpUrl}/healthz`));
      expect(live.status).toBe(200);
      expect(liveMs).toBeLessThan(500);

      s.proxy.forward();
      const { value: after, ms: afterMs } = await timed(post);
      expect(after.status).toBe(202);
      expect(afterMs).toBeLessThan(2_000);
      expect((await fetch(`${s.server.httpUrl}/readyz`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('keeps authenticated devices connected through the outage and delivers to them afterwards', async () => {
    const s = await startProxiedServer();
    try {
      const device = await connectAuthenticated(s.server.wsUrl, 'blackhole-2', mint('blackhole-2'));
      s.proxy.blackhole('both');
      const res = await s.server.api('/v1/devices/blackhole-2/actuations', { method: 'POST', json: command, signal: AbortSignal.timeout(15_000) });
      expect(res.status).toBe(503);
      // The socket is still open and answers pings meanwhile.
      device.send({ type: 'ping' });
      expect((await device.next(3_000)).code).toBe(202);
      // A device authenticating now is told 500 and closed (within the timeout, before AUTH_TIMEOUT_MS's 1008).
      const newcomer = await connectDevice(s.server.wsUrl);
      const { ms: authMs } = await timed(async () => {
        newcomer.send({ type: 'device', deviceId: 'blackhole-3', deviceToken: mint('blackhole-3') });
        expect((await newcomer.next(8_000)).code).toBe(500);
        expect((await within(newcomer.closed, 5_000)).code).toBe(1011);
      });
      expect(authMs).toBeLessThan(TIMEOUT_MS + 2_500);

      s.proxy.forward();
      const ok = await s.server.api('/v1/devices/blackhole-2/actuations', { method: 'POST', json: command });
      expect(ok.status).toBe(202);
      const { id } = (await ok.json()) as { id: string };
      const got = await device.next(5_000);
      expect(got).toMatchObject({ code: 1024, id });
      device.close();
    } finally {
      await s.close();
    }
  });
});

describe('a direct send whose answer is lost (the database committed it, the server saw the connection fail)', () => {
  it('is put back in the queue once the database answers, and reaches its device', async () => {
    // Without requeueUncertain (dispatcher.ts) the row stayed `sent`, never written, until it expired.
    const s = await startProxiedServer();
    try {
      const device = await connectAuthenticated(s.server.wsUrl, 'uncertain-1', mint('uncertain-1'));
      for (let i = 0; i < 2; i++) {
        // Delivered and acked: the device is live, so the next POST is a direct send.
        const res = await s.server.api('/v1/devices/uncertain-1/actuations', { method: 'POST', json: command });
        expect(res.status).toBe(202);
        const got = await device.next(5_000);
        device.send({ type: 'ack', id: got.id, statusCode: 200 });
      }
      s.proxy.blackhole('fromTarget'); // the statement reaches PostgreSQL and commits; its answer vanishes
      const lost = await s.server.api('/v1/devices/uncertain-1/actuations', { method: 'POST', json: command, signal: AbortSignal.timeout(15_000) });
      expect(lost.status).toBe(503);
      const { rows } = await db.pool.query<{ id: string; status: string }>(
        `select id, status from actuations where device_id = 'uncertain-1' and seq = 3`,
      );
      expect(rows[0]?.status).toBe('sent'); // committed as a direct send, not written
      s.proxy.forward();
      const got = await device.next(8_000);
      expect(got).toMatchObject({ code: 1024, id: rows[0]!.id, seq: 3 });
      device.close();
    } finally {
      await s.close();
    }
  });
});

describe('the LISTEN connection lost silently', () => {
  it('is detected by its probe and replaced, and what was NOTIFYed meanwhile is delivered', async () => {
    // Instance A: pool direct, LISTEN through the proxy; its poll is 10 minutes, so only
    // NOTIFY (or a new LISTEN connection's re-check) can bring it an actuation posted on B.
    const { proxy, url } = await proxied(db);
    const a = await startTestServer({ ...db, url }, { ...env, DISPATCH_POLL_MS: '600000', INSTANCE_ID: 'listen-a' });
    const b = await startTestServer(db, { ...env, INSTANCE_ID: 'listen-b' });
    try {
      const device = await connectAuthenticated(a.wsUrl, 'listen-1', mint('listen-1'));
      const first = await b.api('/v1/devices/listen-1/actuations', { method: 'POST', json: command });
      expect(first.status).toBe(202);
      expect(await device.next(5_000)).toMatchObject({ code: 1024 });

      const acceptedBefore = proxy.accepted;
      proxy.freezeConnections();
      const lost = await b.api('/v1/devices/listen-1/actuations', { method: 'POST', json: command });
      expect(lost.status).toBe(202);
      const { id } = (await lost.json()) as { id: string };

      // Probe every 1 s, bounded by 1 s: the dead connection is replaced within a few seconds.
      const got = await device.next(3 * TIMEOUT_MS + 3_000);
      expect(got).toMatchObject({ code: 1024, id });
      expect(proxy.accepted).toBeGreaterThan(acceptedBefore);
      device.close();
    } finally {
      await a.close();
      await b.close();
      await proxy.stop();
    }
  });
});

describe('an instance cut off from the database long enough to be presumed dead', () => {
  it('closes the sockets whose sessions the others closed meanwhile, so the devices reconnect and get their actuations', async () => {
    const beat = { INSTANCE_HEARTBEAT_MS: '300' };
    const a = await startTestServer(db, { ...env, ...beat, INSTANCE_ID: 'cut-a' });
    const b = await startProxiedServer({ ...beat, INSTANCE_ID: 'cut-b' });
    try {
      const device = await connectAuthenticated(b.server.wsUrl, 'cut-1', mint('cut-1'));
      b.proxy.blackhole('both');
      // A sees B's beats stop and closes B's sessions.
      const closedRow = await eventually(
        async () => (await db.pool.query<{ close_reason: string | null }>("select close_reason from device_sessions where device_id = 'cut-1' order by id desc limit 1")).rows[0]?.close_reason,
        (reason) => reason === 'instance lost',
      );
      expect(closedRow).toBe('instance lost');
      b.proxy.forward();
      // B, beating again, finds its session closed and closes the socket: the device reconnects.
      expect((await within(device.closed, 5_000)).code).toBe(1000);
      const again = await connectAuthenticated(b.server.wsUrl, 'cut-1', mint('cut-1'));
      const res = await a.api('/v1/devices/cut-1/actuations', { method: 'POST', json: command });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect(await again.next(5_000)).toMatchObject({ code: 1024, id });
      again.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('all backends terminated (PostgreSQL restarted)', () => {
  it('answers 202 at once afterwards and listens again', async () => {
    const a = await startTestServer(db, { ...env, DISPATCH_POLL_MS: '600000', INSTANCE_ID: 'restart-a' });
    const b = await startTestServer(db, { ...env, INSTANCE_ID: 'restart-b' });
    const admin = new pg.Client(db.url);
    await admin.connect();
    try {
      const device = await connectAuthenticated(a.wsUrl, 'restart-1', mint('restart-1'));
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()');
      // A POST sent in the same millisecond as the termination may still be written to a pooled
      // connection whose end the pool has not yet read: that one answers 503 (it cannot know whether
      // the backend ran it), and the pool drops the connection. The next one is a 202, within 2 s.
      const { value: res, ms } = await timed(async () => {
        const first = await b.api('/v1/devices/restart-1/actuations', { method: 'POST', json: command });
        if (first.status !== 503) return first;
        return b.api('/v1/devices/restart-1/actuations', { method: 'POST', json: command });
      });
      expect(res.status).toBe(202);
      expect(ms).toBeLessThan(2_000);
      const { id } = (await res.json()) as { id: string };
      // A's LISTEN connection was terminated too: it reconnects, re-checks, and delivers.
      expect(await device.next(10_000)).toMatchObject({ code: 1024, id });
      device.close();
    } finally {
      await admin.end();
      await a.close();
      await b.close();
    }
  });
});

describe('an ack that arrives while the database refuses connections', () => {
  it('is retried and recorded once the database is back: the actuation ends acked', async () => {
    const s = await startProxiedServer();
    try {
      const device = await connectAuthenticated(s.server.wsUrl, 'ack-outage-1', mint('ack-outage-1'));
      const res = await s.server.api('/v1/devices/ack-outage-1/actuations', { method: 'POST', json: command });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect(await device.next(5_000)).toMatchObject({ code: 1024, id });
      expect(await eventually(() => statusOf(id), (st) => st === 'sent')).toBe('sent');

      await s.proxy.stop(); // connections reset, new ones refused
      device.send({ type: 'ack', id, statusCode: 200, reasonPhrase: 'OK' });
      const retried = async () => (await s.server.app.metrics.registry.getSingleMetric('iotws_device_acks_total')!.get()).values.find((v) => v.labels.outcome === 'retried')?.value ?? 0;
      expect(await eventually(retried, (n) => n >= 2, 5_000)).toBeGreaterThanOrEqual(2);
      expect(await statusOf(id)).toBe('sent');
      // The socket stays open meanwhile.
      device.send({ type: 'ping' });
      expect((await device.next(3_000)).code).toBe(202);

      await s.proxy.start();
      expect(await eventually(() => statusOf(id), (st) => st === 'acked', 10_000)).toBe('acked');
      device.close();
    } finally {
      await s.close();
    }
  });
});

describe('a device that disconnects while the database refuses connections', () => {
  // Shown to fail without the retry in gateway.ts closeSessionRow (the row stayed open after the database was back).
  it('gets its session row closed once the database is back, with the time its socket closed', async () => {
    const s = await startProxiedServer();
    const admin = new pg.Client(db.url);
    await admin.connect();
    try {
      const device = await connectAuthenticated(s.server.wsUrl, 'close-outage-1', mint('close-outage-1'));
      await s.proxy.stop(); // connections reset, new ones refused
      const closedAt = Date.now();
      device.close();
      await device.closed;
      const openRow = async () =>
        (await admin.query<{ disconnected_at: Date | null }>(`select disconnected_at from device_sessions where device_id = 'close-outage-1'`)).rows[0]!;
      // The first attempt failed: the row is still open while the database refuses.
      await new Promise((r) => setTimeout(r, 1_500)); // a window in which the row must stay open (the database is refused)
      expect((await openRow()).disconnected_at).toBeNull();
      await s.proxy.start();
      const row = await eventually(openRow, (r) => r.disconnected_at !== null, 10_000);
      expect(Math.abs(row.disconnected_at!.getTime() - closedAt)).toBeLessThan(1_000);
    } finally {
      await admin.end();
      await s.close();
    }
  });
});
