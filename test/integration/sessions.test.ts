/**
 * Session rows in PostgreSQL over the life of a connection: written before the 200,
 * closed on every kind of disconnect, kept fresh by the heartbeat, and recovered
 * after an instance dies (its own restart, or another instance's liveness sweep).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { makePool } from '../../src/db/pool.js';
import { closeSession, openSessions, SESSION_REPLACED_CHANNEL, touchSessions } from '../../src/gateway/sessions-sql.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually, within } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const HEARTBEAT_INTERVAL_MS = 300;
const INSTANCE_HEARTBEAT_MS = 1_000;

let db: TestDatabase;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, {
    HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS),
    INSTANCE_HEARTBEAT_MS: String(INSTANCE_HEARTBEAT_MS),
  });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

interface SessionRecord {
  id: number;
  device_id: string;
  account_id: string | null;
  instance_id: string;
  remote_address: string | null;
  connected_at: Date;
  last_seen_at: Date;
  disconnected_at: Date | null;
  close_code: number | null;
  close_reason: string | null;
}

async function sessionsOf(deviceId: string): Promise<SessionRecord[]> {
  const { rows } = await db.pool.query<SessionRecord>('select * from device_sessions where device_id = $1 order by id', [deviceId]);
  return rows;
}

async function closedSessionOf(deviceId: string): Promise<SessionRecord | undefined> {
  const rows = await eventually(() => sessionsOf(deviceId), (r) => r.length > 0 && r.at(-1)!.disconnected_at !== null);
  return rows.at(-1);
}

/** A server whose database connections go through a proxy the test controls. */
async function startProxiedServer(
  target: TestDatabase,
  env: Record<string, string> = {},
): Promise<{ proxy: TcpProxy; server: TestServer; close(): Promise<void> }> {
  const direct = new URL(target.url);
  const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port) });
  const proxiedUrl = new URL(target.url);
  proxiedUrl.hostname = '127.0.0.1';
  proxiedUrl.port = String(proxy.port);
  const timeoutMs = env.DATABASE_TIMEOUT_MS === undefined ? undefined : Number(env.DATABASE_TIMEOUT_MS);
  const pool = makePool({ connectionString: proxiedUrl.toString(), max: 10, ...(timeoutMs === undefined ? {} : { timeoutMs }) }, makeLogger({ level: 'silent' }));
  const proxied = await startTestServer({ ...target, url: proxiedUrl.toString(), pool }, env);
  return {
    proxy,
    server: proxied,
    async close() {
      proxy.latencyMs = 0;
      await proxied.close();
      await proxy.stop();
      await pool.end();
    },
  };
}

/** A `ws` client that authenticates; `autoPong: false` makes it a peer that stopped answering. */
async function connectWs(deviceId: string, options: { autoPong: boolean }): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(server.wsUrl, 'echo-protocol', { autoPong: options.autoPong });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const answer = new Promise<{ code: number }>((resolve) => ws.once('message', (data) => resolve(JSON.parse(String(data)))));
  ws.send(JSON.stringify({ type: 'device', deviceId, deviceToken: mint(deviceId) }));
  expect((await answer).code).toBe(200);
  return { ws, closed };
}

describe('session rows', () => {
  it('writes the session row before answering 200', async () => {
    const device = await connectAuthenticated(server.wsUrl, 'before-200', mint('before-200', { accountId: 'acc-9' }));
    // No polling: the row must already be there when the 200 arrives.
    const rows = await sessionsOf('before-200');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      device_id: 'before-200',
      account_id: 'acc-9',
      instance_id: server.config.instanceId,
      disconnected_at: null,
      close_code: null,
    });
    expect(rows[0]!.remote_address).toMatch(/127\.0\.0\.1$/);
    device.close();
    expect(await closedSessionOf('before-200')).toMatchObject({ close_code: 1000 });
  });

  it('writes no row for a socket that never authenticates, nor for a refused token', async () => {
    const count = async () => (await db.pool.query<{ n: number }>('select count(*)::int as n from device_sessions')).rows[0]!.n;
    const before = await count();
    const device = await connectDevice(server.wsUrl);
    device.send({ type: 'ping' });
    expect((await device.next()).code).toBe(202);
    device.close();
    await device.closed;
    const refused = await connectDevice(server.wsUrl);
    refused.send({ type: 'device', deviceId: 'refused', deviceToken: mint('someone-else') });
    expect((await refused.closed).code).toBe(1008);
    expect(await count()).toBe(before);
  });

  it('closes the row with 1006 when the peer drops the TCP connection without a close frame', async () => {
    const { ws } = await connectWs('dropped-tcp', { autoPong: true });
    ws.terminate();
    const row = await closedSessionOf('dropped-tcp');
    expect(row).toMatchObject({ close_code: 1006, disconnected_at: expect.any(Date) });
  });

  it('keeps the reason the server chose when it closes the socket itself', async () => {
    const device = await connectAuthenticated(server.wsUrl, 'format-error', mint('format-error'));
    device.sendRaw('not json');
    expect(await device.next()).toEqual({ code: 401, content: 'Wrong message format' });
    expect((await device.closed).code).toBe(1003);
    expect(await closedSessionOf('format-error')).toMatchObject({ close_code: 1003, close_reason: 'wrong message format' });
  });
});

describe('heartbeat', () => {
  it('terminates a peer that stops answering pings and closes its row (1006, "heartbeat timeout")', async () => {
    const silent = await connectWs('silent-peer', { autoPong: false });
    const healthy = await connectWs('healthy-peer', { autoPong: true });
    // (No count of pings seen here: the first may come before a listener could be attached after
    // authentication. The row's close reason is what says the heartbeat closed it.)
    expect(await silent.closed).toBe(1006);
    const row = await closedSessionOf('silent-peer');
    expect(row).toMatchObject({ close_code: 1006, close_reason: 'heartbeat timeout' });

    // A peer that answers is left alone.
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    expect((await sessionsOf('healthy-peer'))[0]!.disconnected_at).toBeNull();
    healthy.ws.close();
  });

  it('terminates an unauthenticated peer that stops answering pings', async () => {
    // An auth timeout longer than the heartbeat shows the heartbeat is what closed it.
    const slowAuth = await startTestServer(db, { HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), AUTH_TIMEOUT_MS: '60000' });
    try {
      const ws = new WebSocket(slowAuth.wsUrl, 'echo-protocol', { autoPong: false });
      ws.on('error', () => undefined);
      const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
      expect(code).toBe(1006);
    } finally {
      await slowAuth.close();
    }
  });

  it('refreshes last_seen_at from pongs, without the device sending messages', async () => {
    const device = await connectAuthenticated(server.wsUrl, 'quiet-but-alive', mint('quiet-but-alive'));
    const [first] = await sessionsOf('quiet-but-alive');
    const rows = await eventually(
      () => sessionsOf('quiet-but-alive'),
      (r) => r[0]!.last_seen_at.getTime() > first!.last_seen_at.getTime() + HEARTBEAT_INTERVAL_MS,
    );
    expect(rows[0]!.last_seen_at.getTime()).toBeGreaterThan(first!.last_seen_at.getTime() + HEARTBEAT_INTERVAL_MS);
    expect(rows[0]!.disconnected_at).toBeNull();
    device.close();
  });
});

describe('errors while opening a session', () => {
  it('answers 500 and closes when the database is unreachable, and works again once it is back', async () => {
    const proxied = await startProxiedServer(db, { INSTANCE_HEARTBEAT_MS: String(INSTANCE_HEARTBEAT_MS) });
    try {
      await proxied.proxy.stop();
      const device = await connectDevice(proxied.server.wsUrl);
      device.send({ type: 'device', deviceId: 'db-down', deviceToken: mint('db-down') });
      expect(await device.next()).toEqual({ code: 500, content: 'Internal server error' });
      expect((await device.closed).code).toBe(1011);
      expect(await sessionsOf('db-down')).toHaveLength(0);

      await proxied.proxy.start();
      const again = await connectAuthenticated(proxied.server.wsUrl, 'db-down', mint('db-down'));
      expect(await sessionsOf('db-down')).toHaveLength(1);
      again.close();
    } finally {
      await proxied.close();
    }
  });
});

describe('races with a slow database', () => {
  // Slow, not failing: every round trip takes seconds here, so the bound on waits for the
  // database (DATABASE_TIMEOUT_MS, which would fail the opening) is set above it.
  const slow = { DATABASE_TIMEOUT_MS: '30000' };
  it('closes the row of a device still authenticating at shutdown before close() resolves', async () => {
    // Its own database: no other instance's liveness sweep can close the row first while answers are slow.
    const own = await createTestDatabase();
    const proxied = await startProxiedServer(own, slow);
    const ownSessionsOf = async (deviceId: string) =>
      (await own.pool.query<SessionRecord>('select * from device_sessions where device_id = $1', [deviceId])).rows;
    try {
      const device = await connectDevice(proxied.server.wsUrl);
      proxied.proxy.latencyMs = 1_500;
      device.send({ type: 'device', deviceId: 'auth-at-shutdown', deviceToken: mint('auth-at-shutdown') });
      // The row is committed; the server has not heard back yet.
      await eventually(() => ownSessionsOf('auth-at-shutdown'), (r) => r.length === 1);
      proxied.proxy.latencyMs = 0;

      const closing = proxied.server.close();
      expect((await device.closed).code).toBe(1001);
      await closing;
      const [row] = await ownSessionsOf('auth-at-shutdown');
      expect(row).toMatchObject({ close_code: 1001, close_reason: 'server shutting down' });
    } finally {
      await proxied.close();
      await own.drop();
    }
  });

  it('does not keep a device that disconnected while its takeover was being announced', async () => {
    const deviceId = 'takeover-race';
    const onFirst = await connectAuthenticated(server.wsUrl, deviceId, mint(deviceId));
    // The same instance heartbeat as `server`, whose sweep would otherwise find this one stale.
    const second = await startProxiedServer(db, { INSTANCE_HEARTBEAT_MS: String(INSTANCE_HEARTBEAT_MS), ...slow });
    const listener = new pg.Client(db.url);
    listener.on('error', () => {}); // a connection ended by the database's drop after a failure is not a second failure
    await listener.connect();
    try {
      await listener.query(`listen ${SESSION_REPLACED_CHANNEL}`);
      const announced = new Promise<void>((resolve) => listener.on('notification', () => resolve()));
      const device = await connectDevice(second.server.wsUrl);
      const latencyMs = 800;
      second.proxy.latencyMs = latencyMs;
      device.send({ type: 'device', deviceId, deviceToken: mint(deviceId) });
      // The NOTIFY is out; the second instance is still waiting for its answer. The device leaves now.
      await within('the takeover NOTIFY', announced, 20_000);
      device.close();
      await within('the second device socket closed', device.closed);
      expect(await within('the first session closed', onFirst.closed)).toEqual({ code: 1000, reason: 'session replaced' });

      // Give the held answer time to arrive and the authentication to finish: a window for the
      // stale connection NOT to appear (absence has no event to wait for).
      await new Promise((r) => setTimeout(r, latencyMs + 1_500));
      expect(second.server.app.gateway.connectionOf(deviceId)).toBeUndefined();
      expect(second.server.app.gateway.connectedDeviceCount()).toBe(0);
      // Its row is closed too, by a statement that itself crosses the slow link (a few round trips).
      const rows = await eventually(() => sessionsOf(deviceId), (r) => r.every((x) => x.disconnected_at !== null), 15_000);
      expect(rows.map((r) => r.disconnected_at !== null)).toEqual(rows.map(() => true));
    } finally {
      await listener.end();
      await second.close();
    }
  }, 90_000); // above its own bounded waits (20 + 10 + 10 + 2.3 + 15 s) on a loaded machine
});

describe('recovery after an instance dies', () => {
  it('closes the rows an instance id left open when it starts again with that id', async () => {
    const instanceId = `crashed-${Date.now()}`;
    // What a SIGKILLed run leaves behind: its instance row and open sessions.
    await db.pool.query(`insert into instances (id, heartbeat_interval_ms) values ($1, 5000)`, [instanceId]);
    await db.pool.query(
      `insert into device_sessions (device_id, instance_id, connected_at, last_seen_at)
       values ('orphan-1', $1, now() - interval '10 minutes', now() - interval '2 minutes'),
              ('orphan-2', $1, now() - interval '5 minutes', now() - interval '1 minute')`,
      [instanceId],
    );
    const alive = await connectAuthenticated(server.wsUrl, 'not-an-orphan', mint('not-an-orphan'));

    const restarted = await startTestServer(db, { INSTANCE_ID: instanceId });
    try {
      // Closed during start-up, before listen() resolved: no waiting.
      const { rows } = await db.pool.query<SessionRecord>(
        `select * from device_sessions where device_id in ('orphan-1', 'orphan-2') order by device_id`,
      );
      for (const row of rows) {
        expect(row).toMatchObject({ close_code: 1006, close_reason: 'instance restarted' });
        // Disconnected when last seen, not when noticed.
        expect(row.disconnected_at).toEqual(row.last_seen_at);
      }
      expect(rows).toHaveLength(2);
      expect((await sessionsOf('not-an-orphan'))[0]!.disconnected_at).toBeNull();

      // The restarted instance serves the orphaned devices again.
      const back = await connectAuthenticated(restarted.wsUrl, 'orphan-1', mint('orphan-1'));
      expect((await sessionsOf('orphan-1')).map((r) => r.disconnected_at === null)).toEqual([false, true]);
      back.close();
    } finally {
      alive.close();
      await restarted.close();
    }
  });

  it("closes the rows of an instance whose heartbeat is stale in another instance's sweep, and only those", async () => {
    const deadId = `dead-${Date.now()}`;
    await db.pool.query(`insert into instances (id, started_at, last_heartbeat_at, heartbeat_interval_ms) values ($1, now() - interval '1 hour', now() - interval '1 minute', 5000)`, [
      deadId,
    ]);
    await db.pool.query(
      `insert into device_sessions (device_id, instance_id, connected_at, last_seen_at)
       values ('on-dead-instance', $1, now() - interval '10 minutes', now() - interval '70 seconds')`,
      [deadId],
    );
    // A second live instance with a connected device: its rows must survive every sweep.
    const other = await startTestServer(db, { INSTANCE_HEARTBEAT_MS: String(INSTANCE_HEARTBEAT_MS) });
    try {
      const onOther = await connectAuthenticated(other.wsUrl, 'on-live-instance', mint('on-live-instance'));
      const onThis = await connectAuthenticated(server.wsUrl, 'on-this-instance', mint('on-this-instance'));

      const row = await closedSessionOf('on-dead-instance');
      expect(row).toMatchObject({ close_code: 1006, close_reason: 'instance lost' });
      expect(row!.disconnected_at).toEqual(row!.last_seen_at);

      // Let a few more sweeps pass on both instances.
      const { rows: beats } = await db.pool.query<{ id: string; last_heartbeat_at: Date }>(`select id, last_heartbeat_at from instances where id = $1`, [
        other.config.instanceId,
      ]);
      await eventually(
        () => db.pool.query<{ t: Date }>(`select last_heartbeat_at as t from instances where id = $1`, [other.config.instanceId]),
        (r) => r.rows[0]!.t.getTime() >= beats[0]!.last_heartbeat_at.getTime() + 2 * INSTANCE_HEARTBEAT_MS,
      );
      expect((await sessionsOf('on-live-instance'))[0]!.disconnected_at).toBeNull();
      expect((await sessionsOf('on-this-instance'))[0]!.disconnected_at).toBeNull();
      onOther.close();
      onThis.close();
    } finally {
      await other.close();
    }
  });

  it('removes its instance row on a clean stop, so nothing is swept for it', async () => {
    const stopping = await startTestServer(db);
    const { rowCount: before } = await db.pool.query('select 1 from instances where id = $1', [stopping.config.instanceId]);
    expect(before).toBe(1);
    await stopping.close();
    const { rowCount: after } = await db.pool.query('select 1 from instances where id = $1', [stopping.config.instanceId]);
    expect(after).toBe(0);
  });
});

describe('statements keyed by device (shard-ready, docs/scaling.md)', () => {
  it('closeSession and touchSessions move a row only when the device matches its session id', async () => {
    // Under the live test server's instance id, so that its liveness sweep leaves the row alone.
    const [opened] = await openSessions(db.pool, server.config.instanceId, [{ deviceId: 'keyed-1', accountId: null, remoteAddress: null }]);
    const sessionId = opened!.sessionId;
    const row = async () =>
      (await db.pool.query<{ disconnected_at: Date | null; last_seen_at: Date }>('select disconnected_at, last_seen_at from device_sessions where id = $1', [sessionId])).rows[0]!;
    const before = await row();
    const later = new Date(before.last_seen_at.getTime() + 60_000);

    await touchSessions(db.pool, ['keyed-other'], [sessionId], [later]);
    await closeSession(db.pool, { deviceId: 'keyed-other', sessionId }, 1000, 'wrong device', later);
    expect(await row()).toEqual(before);

    await touchSessions(db.pool, ['keyed-1'], [sessionId], [later]);
    expect((await row()).last_seen_at).toEqual(later);
    await closeSession(db.pool, { deviceId: 'keyed-1', sessionId }, 1000, 'closed', later);
    expect((await row()).disconnected_at).not.toBeNull();
  });
});
