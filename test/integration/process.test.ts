/**
 * The server as a real process (`node --import tsx src/main.ts`): signals and the
 * shutdown order, recovery after SIGKILL, start-up failures on bad configuration,
 * and the embedded PostgreSQL of `npm start` end to end.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { freePort } from '../../src/db/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint, testKeyPaths } from '../helpers/keys.js';
import { startServerProcess, type LogLine, type ServerProcess } from '../helpers/main-process.js';
import { TEST_CREDENTIALS } from '../helpers/server.js';

let db: TestDatabase;
let tmp: string;
const started: ServerProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-process-'));
  // embedded-postgres runs postgres as the `postgres` OS user when we are root.
  fs.chmodSync(tmp, 0o755);
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.kill()));
});
afterAll(async () => {
  await db?.drop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function start(env: Record<string, string>): ServerProcess {
  const server = startServerProcess(env);
  started.push(server);
  return server;
}

async function baseEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    DEVICE_PUBLIC_KEY_PATH: testKeyPaths().publicKeyPath,
    API_USERNAME: TEST_CREDENTIALS.username,
    API_PASSWORD: TEST_CREDENTIALS.password,
    LOG_LEVEL: 'info',
    DATA_DIR: fs.mkdtempSync(path.join(tmp, 'data-')),
    INSTANCE_ID: `proc-${crypto.randomBytes(4).toString('hex')}`,
    ...extra,
  };
}

const isListening = (line: LogLine) => line.msg === 'server: listening';

function basic(username: string, password: string): string {
  return 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
}

async function sessionsOf(deviceId: string) {
  const { rows } = await db.pool.query('select * from device_sessions where device_id = $1 order by id', [deviceId]);
  return rows;
}

/** A WebSocket peer written by hand: completes the upgrade, then never answers anything (so never completes a close). */
function stalledPeer(port: number): Promise<{ received: () => Buffer; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (upgraded) return;
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffer.subarray(0, end).toString();
      buffer = buffer.subarray(end + 4);
      upgraded = true;
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${head}`));
      resolve({ received: () => buffer, socket });
    });
    socket.write(
      'GET / HTTP/1.1\r\n' +
        `Host: 127.0.0.1:${port}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: echo-protocol\r\n\r\n',
    );
  });
}

function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'echo-protocol');
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('error', reject);
  });
}

describe('graceful shutdown', () => {
  it('on SIGTERM: refuses new work with 503, closes devices with 1001 and their rows, exits 0', async () => {
    const env = await baseEnv();
    const server = start(env);
    await server.waitForLog(isListening);
    const port = Number(env.PORT);
    const device = await connectAuthenticated(`ws://127.0.0.1:${port}/`, 'proc-graceful', mint('proc-graceful'));
    // Holds the shutdown open for a while (the gateway waits for its closing handshake), so we can watch it.
    const stalled = await stalledPeer(port);

    server.child.kill('SIGTERM');
    expect(await device.closed).toEqual({ code: 1001, reason: 'server shutting down' });

    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(503);
    expect(health.headers.get('connection')).toBe('close');
    expect(await health.json()).toEqual({ error: { code: 'SHUTTING_DOWN', message: expect.any(String) } });
    const api = await fetch(`http://127.0.0.1:${port}/v1/devices`, { headers: { authorization: basic(TEST_CREDENTIALS.username, TEST_CREDENTIALS.password) } });
    expect(api.status).toBe(503);
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/`)).toBe(503);

    expect(await server.exited).toEqual({ code: 0, signal: null });
    // The stalled peer got a close frame with 1001 too (opcode 8, then the code).
    const frame = stalled.received();
    expect(frame[0]! & 0x0f).toBe(0x8);
    expect(frame.readUInt16BE(2)).toBe(1001);
    stalled.socket.destroy();

    const [row] = await sessionsOf('proc-graceful');
    expect(row).toMatchObject({ close_code: 1001, close_reason: 'server shutting down', instance_id: env.INSTANCE_ID });
    expect(row.disconnected_at).not.toBeNull();
    const { rowCount } = await db.pool.query('select 1 from instances where id = $1', [env.INSTANCE_ID]);
    expect(rowCount).toBe(0);
    expect(server.logs.map((l) => l.msg)).toContain('server: stopped');
  });

  it('a second signal during shutdown exits at once with a non-zero code', async () => {
    const env = await baseEnv();
    const server = start(env);
    await server.waitForLog(isListening);
    const stalled = await stalledPeer(Number(env.PORT));
    server.child.kill('SIGTERM');
    await server.waitForLog((l) => l.msg === 'server: shutting down');
    server.child.kill('SIGINT');
    expect(await server.exited).toEqual({ code: 1, signal: null });
    expect(server.logs.map((l) => l.msg)).toContain('server: second signal, exiting now');
    stalled.socket.destroy();
  });
});

describe('crash recovery', () => {
  it('after SIGKILL, a restart with the same INSTANCE_ID closes the rows it left open', async () => {
    const env = await baseEnv();
    const first = start(env);
    await first.waitForLog(isListening);
    const device = await connectAuthenticated(`ws://127.0.0.1:${env.PORT}/`, 'proc-orphan', mint('proc-orphan'));

    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await device.closed;
    expect((await sessionsOf('proc-orphan'))[0]).toMatchObject({ disconnected_at: null, instance_id: env.INSTANCE_ID });

    const second = start({ ...env, PORT: String(await freePort()) });
    await second.waitForLog(isListening);
    const recovered = second.logs.find((l) => l.msg === 'startup: closed sessions left open by the previous run');
    expect(recovered).toMatchObject({ sessions: 1 });
    const [row] = await sessionsOf('proc-orphan');
    expect(row).toMatchObject({ close_code: 1006, close_reason: 'instance restarted' });
    expect(row.disconnected_at).toEqual(row.last_seen_at);

    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});

describe('bad configuration fails at start-up, naming the culprit', () => {
  async function failsWith(env: Record<string, string>, expected: RegExp[]): Promise<number | null> {
    const server = start(env);
    const { code } = await server.exited;
    const output = server.stderr() + server.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const pattern of expected) expect(output).toMatch(pattern);
    expect(server.logs.some(isListening)).toBe(false);
    return code;
  }

  it.each([
    ['PORT=abc', { PORT: 'abc' }, /PORT/],
    ['PORT out of range', { PORT: '70000' }, /PORT/],
    ['DEVICE_TOKEN_ALGORITHMS=HS256', { DEVICE_TOKEN_ALGORITHMS: 'HS256' }, /DEVICE_TOKEN_ALGORITHMS/],
    ['DEVICE_TOKEN_ALGORITHMS=none', { DEVICE_TOKEN_ALGORITHMS: 'RS256,none' }, /DEVICE_TOKEN_ALGORITHMS/],
    ['a DATABASE_URL that is not postgres://', { DATABASE_URL: 'mysql://localhost/x' }, /DATABASE_URL/],
    ['LOG_LEVEL=loud', { LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    ['API_USERNAME without API_PASSWORD', { API_PASSWORD: '' }, /API_PASSWORD/],
  ])('%s', async (_name, bad, pattern) => {
    const code = await failsWith(await baseEnv(bad), [pattern]);
    expect(code).toBe(78); // EX_CONFIG, as the README's "Exit status" says
  });

  it('production without the device public key names the variable and the file, and generates nothing', async () => {
    const missing = path.join(tmp, 'no-such-dir', 'public.pem');
    const env = await baseEnv({ NODE_ENV: 'production', DEVICE_PUBLIC_KEY_PATH: missing, API_PASSWORD: 'a-long-production-password' });
    const code = await failsWith(env, [/DEVICE_PUBLIC_KEY_PATH/, new RegExp(missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))]);
    expect(code).not.toBe(0);
    expect(fs.existsSync(missing)).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(missing), 'private.pem'))).toBe(false);
  });

  it('production without API credentials names them', async () => {
    const env = await baseEnv({ NODE_ENV: 'production', API_USERNAME: '', API_PASSWORD: '' });
    expect(await failsWith(env, [/API_USERNAME/])).not.toBe(0);
  });

  it('production without DATABASE_URL names it (no embedded database in production)', async () => {
    const env = await baseEnv({ NODE_ENV: 'production', DATABASE_URL: '', API_PASSWORD: 'a-long-production-password' });
    expect(await failsWith(env, [/DATABASE_URL/])).not.toBe(0);
  });

  it('a port that is already taken fails with a non-zero exit', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      // A long deadline, so that only a clean stop (not the forced exit) passes within the test timeout.
      const code = await failsWith(await baseEnv({ PORT: String(port), SHUTDOWN_TIMEOUT_MS: '120000' }), [/EADDRINUSE/]);
      expect(code).not.toBe(0);
      const fatal = started.at(-1)!.logs.find((l) => l.level === 60)!;
      expect(fatal.msg).toMatch(new RegExp(`server: start-up failed: port ${port} on 127.0.0.1 is already in use`));
      expect(fatal.hint).toMatch(/set PORT/);
    } finally {
      blocker.close();
    }
  });
});

describe('start-up failures say why, at fatal level, with a hint', () => {
  it('a device public key file that is not a PEM public key', async () => {
    const bad = path.join(tmp, 'not-a-key.pem');
    fs.writeFileSync(bad, 'hello\n');
    const server = start(await baseEnv({ DEVICE_PUBLIC_KEY_PATH: bad }));
    expect((await server.exited).code).toBe(1);
    const fatal = server.logs.find((l) => l.level === 60)!;
    expect(fatal.msg).toContain(`server: start-up failed: the device-token public key ${bad} is not a PEM public key`);
    expect(fatal.hint).toMatch(/BEGIN PUBLIC KEY/);
  });

  it('a second server on the same DATA_DIR: the cluster is in use by the first one', async () => {
    const dataDir = fs.mkdtempSync(path.join(tmp, 'embedded-twice-'));
    fs.chmodSync(dataDir, 0o755);
    const first = start(await baseEnv({ DATA_DIR: dataDir, DATABASE_URL: '' }));
    await first.waitForLog(isListening, 120_000);
    const pid = first.logs.find((l) => l.msg === 'embedded postgres: started')!.pid;

    const second = start(await baseEnv({ DATA_DIR: dataDir, DATABASE_URL: '' }));
    expect((await second.exited).code).toBe(1);
    const fatal = second.logs.find((l) => l.level === 60)!;
    expect(fatal.msg).toContain(`is in use by another PostgreSQL (pid ${pid})`);
    expect(fatal.hint).toMatch(/another iot-websocket-server is running on the same DATA_DIR/);
    // The first one is untouched.
    expect((await fetch(`http://127.0.0.1:${first.logs.find(isListening)!.port}/readyz`)).status).toBe(200);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
  }, 240_000);
});

describe('npm start without DATABASE_URL (embedded PostgreSQL)', () => {
  it('starts its own database, serves a device and the API, stops it on SIGTERM, and keeps the data for the next start', async () => {
    const dataDir = fs.mkdtempSync(path.join(tmp, 'embedded-'));
    fs.chmodSync(dataDir, 0o755);
    const env = await baseEnv({ DATA_DIR: dataDir, DATABASE_URL: '', API_USERNAME: '', API_PASSWORD: '' });

    const first = start(env);
    await first.waitForLog(isListening, 120_000);
    expect(first.logs.find(isListening)).toMatchObject({ embeddedDatabase: true });
    expect(first.logs.map((l) => l.msg)).toContain('embedded postgres: initialising a new database cluster');

    // Credentials were generated into the data directory.
    const credentials = JSON.parse(fs.readFileSync(path.join(dataDir, 'api-credentials.json'), 'utf8')) as { username: string; password: string };
    const device = await connectAuthenticated(`ws://127.0.0.1:${env.PORT}/`, 'embedded-dev', mint('embedded-dev', { accountId: 'acc-e' }));
    const res = await fetch(`http://127.0.0.1:${env.PORT}/v1/devices/embedded-dev`, { headers: { authorization: basic(credentials.username, credentials.password) } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ deviceId: 'embedded-dev', online: true, session: { accountId: 'acc-e' } });

    first.child.kill('SIGTERM');
    expect((await device.closed).code).toBe(1001);
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(first.logs.map((l) => l.msg)).toContain('embedded postgres: stopped');
    // PostgreSQL stopped cleanly: no postmaster left behind.
    expect(fs.existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    // Second start: same cluster, same credentials, the first run's session is there, closed with 1001.
    const second = start({ ...env, PORT: String(await freePort()) });
    await second.waitForLog(isListening, 120_000);
    expect(second.logs.map((l) => l.msg)).not.toContain('embedded postgres: initialising a new database cluster');
    const history = await fetch(`http://127.0.0.1:${second.logs.find(isListening)!.port}/v1/devices/embedded-dev/sessions`, {
      headers: { authorization: basic(credentials.username, credentials.password) },
    });
    expect(history.status).toBe(200);
    expect(await history.json()).toMatchObject({ items: [{ deviceId: 'embedded-dev', closeCode: 1001, closeReason: 'server shutting down' }] });

    second.child.kill('SIGINT');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    await eventually(
      async () => fs.existsSync(path.join(dataDir, 'postgres', 'postmaster.pid')),
      (exists) => !exists,
    );
  }, 240_000);

  it('a SIGTERM while starting up still stops the embedded database', async () => {
    const dataDir = fs.mkdtempSync(path.join(tmp, 'embedded-early-'));
    fs.chmodSync(dataDir, 0o755);
    const env = await baseEnv({ DATA_DIR: dataDir, DATABASE_URL: '' });
    const server = start(env);
    // PostgreSQL is up; migrations, keys and listen are still to come.
    await server.waitForLog((l) => l.msg === 'embedded postgres: started', 120_000);
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    const pidFile = path.join(dataDir, 'postgres', 'postmaster.pid');
    const leftover = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : null;
    try {
      expect(leftover).toBeNull();
      expect(exit).toEqual({ code: 0, signal: null });
      expect(server.logs.map((l) => l.msg)).toContain('embedded postgres: stopped');
    } finally {
      // Do not leave an orphaned postgres behind if the assertion above failed.
      if (leftover) {
        try {
          process.kill(leftover, 'SIGQUIT');
        } catch {
          // already gone
        }
      }
    }
  }, 240_000);
});
