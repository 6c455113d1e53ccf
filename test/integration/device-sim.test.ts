/**
 * `npm run device` as a real process (the same tsx entry the script runs) against the
 * real server and PostgreSQL: it authenticates with a minted token, prints pushed
 * actuations as JSON lines, reconnects when the server restarts, and exits cleanly.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { actuationMessage } from '../../src/gateway/protocol.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { testKeyPaths } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { scripts: Record<string, string> };

interface Cli {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const running = new Set<Cli>();

/** Runs what `npm run device -- <args>` runs. */
function runDeviceCli(args: string[]): Cli {
  const [runner, entry] = pkg.scripts.device!.split(' ');
  expect(runner).toBe('tsx');
  const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [entry!, ...args], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const cli = { child, stdout: () => out, stderr: () => err, exited };
  running.add(cli);
  void exited.then(() => running.delete(cli));
  return cli;
}

const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { deviceId: string; receivedAt: string; actuation: { code: number; id: string; content: unknown } });

const command = (deviceId: string, value: string) => ({
  accountId: 'acc-sim',
  deviceId,
  gatewayId: deviceId,
  componentId: 'led-1',
  command: 'LED.v1.0',
  params: [{ name: 'LED', value }],
});

let db: TestDatabase;
let server: TestServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const cli of running) cli.child.kill('SIGKILL');
  await server?.close();
  server = undefined;
});
afterAll(async () => {
  await db?.drop();
});

describe('npm run device', () => {
  it('authenticates, prints a pushed actuation, reconnects after the server restarts, and exits on SIGTERM', async () => {
    server = await startTestServer(db);
    const port = server.port;
    const cli = runDeviceCli(['sim-cli-1', '--url', server.wsUrl, '--mint', '--key', testKeyPaths().privateKeyPath, '--account', 'acc-sim', '--ping-interval', '1']);

    // Authenticated for real: the gateway holds its connection and the session row has the minted account.
    await eventually(() => server!.app.gateway.connectionOf('sim-cli-1'), Boolean, 20_000);
    expect(server.app.gateway.connectionOf('sim-cli-1'), cli.stderr()).toBeDefined();
    const { rows } = await db.pool.query('select account_id, disconnected_at from device_sessions where device_id = $1', ['sim-cli-1']);
    expect(rows).toEqual([{ account_id: 'acc-sim', disconnected_at: null }]);

    const first = crypto.randomUUID();
    expect(server.app.gateway.connectionOf('sim-cli-1')!.send(actuationMessage(first, command('sim-cli-1', '1')))).toBe(true);
    await eventually(() => jsonLines(cli.stdout()).length, (n) => n >= 1);
    const [printed] = jsonLines(cli.stdout());
    expect(printed).toMatchObject({
      deviceId: 'sim-cli-1',
      actuation: { code: 1024, id: first, content: { type: 'command', transport: 'ws', content: command('sim-cli-1', '1') } },
    });
    expect(Number.isNaN(Date.parse(printed!.receivedAt))).toBe(false);

    // Restart: the device is told 1001 and retries (refused while nothing listens) until the new server is up.
    await server.close();
    server = undefined;
    await eventually(() => cli.stderr(), (e) => /disconnected \(1001/.test(e));
    // Refused while nothing listens: two connection attempts after the 1001, so at least one failed.
    await eventually(() => cli.stderr(), (e) => (e.slice(e.indexOf('disconnected (1001')).match(/connecting to /g)?.length ?? 0) >= 2);
    server = await startTestServer(db, { PORT: String(port) });
    await eventually(() => server!.app.gateway.connectionOf('sim-cli-1'), Boolean, 20_000);
    expect(server.app.gateway.connectionOf('sim-cli-1'), cli.stderr()).toBeDefined();
    expect(cli.stderr()).toMatch(/reconnecting in \d+ ms/);
    // The server registers the connection before the device process has read the answer and said so.
    expect(await eventually(() => cli.stderr().match(/authenticated/g)?.length ?? 0, (n) => n >= 2)).toBe(2);

    const second = crypto.randomUUID();
    server.app.gateway.connectionOf('sim-cli-1')!.send(actuationMessage(second, command('sim-cli-1', '0')));
    await eventually(() => jsonLines(cli.stdout()).length, (n) => n >= 2);
    expect(jsonLines(cli.stdout()).map((l) => l.actuation.id)).toEqual([first, second]);

    // SIGTERM: the socket is closed with 1000 and the process exits 0.
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    const closed = await eventually(
      async () => (await db.pool.query('select close_code from device_sessions where device_id = $1 and disconnected_at is not null order by id', ['sim-cli-1'])).rows,
      (r) => r.length === 2,
    );
    expect(closed.map((r: { close_code: number }) => r.close_code)).toEqual([1001, 1000]);
  });

  it('--count N runs <id>-1 … <id>-N from one process', async () => {
    server = await startTestServer(db);
    const cli = runDeviceCli(['sim-fleet', '--count', '3', '--url', server.wsUrl, '--mint', '--key', testKeyPaths().privateKeyPath]);
    const ids = ['sim-fleet-1', 'sim-fleet-2', 'sim-fleet-3'];
    await eventually(() => ids.every((id) => server!.app.gateway.connectionOf(id)), Boolean, 20_000);
    expect(ids.map((id) => server!.app.gateway.connectionOf(id) !== undefined), cli.stderr()).toEqual([true, true, true]);
    expect(server.app.gateway.connectionOf('sim-fleet')).toBeUndefined();
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('exits 1 saying so when the server refuses the token', async () => {
    server = await startTestServer(db);
    const cli = runDeviceCli(['sim-bad', '--url', server.wsUrl, '--token', 'not-a-jwt']);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toMatch(/sim-bad refused by the server \(401: "Invalid device token for device"\)/);
  });

  it('refuses bad arguments with a usage message', async () => {
    const cases = [[], ['a', '--ack', 'maybe', '--mint'], ['a'], ['a', '--token', 't', '--count', '2'], ['a', '--mint', '--count', '0'], ['a', '--mint', '--bogus']];
    for (const args of cases) {
      const cli = runDeviceCli(args);
      expect(await cli.exited, args.join(' ')).toBe(64);
      expect(cli.stderr()).toContain('usage: npm run device');
    }
  });
});

/** Runs what `npm run <script> -- <args>` runs (the tsx entry of the script). */
function runScript(script: string, args: string[]): Cli {
  const [runner, entry] = pkg.scripts[script]!.split(' ');
  expect(runner).toBe('tsx');
  const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [entry!, ...args], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const cli = { child, stdout: () => out, stderr: () => err, exited };
  running.add(cli);
  void exited.then(() => running.delete(cli));
  return cli;
}

describe('the three CLIs treat bad arguments alike: reason and usage on stderr, exit 64, no stack trace', () => {
  it.each([
    ['token', ['lamp-1', '--ttl', 'banana'], /--ttl must be/],
    ['token', ['lamp-1', '--bogus'], /^Unknown option '--bogus'\nusage:/],
    ['token', ['lamp-1', '--ttl', '0'], /--ttl must be more than 0/],
    ['token', ['lamp-1', '--ttl', '0.0h'], /--ttl must be more than 0/],
    ['token', [], /give exactly one device id/],
    ['token', ['lamp-1', '--key', '/no/such/private.pem'], /private key \/no\/such\/private.pem: no such file/],
    ['dss-sim', ['--key', 'abcdef01234567890000000000000001', '--port', 'banana'], /--port must be/],
    ['dss-sim', ['--key', 'abcdef01234567890000000000000001', '--heartbeat', '0'], /--heartbeat must be a positive number/],
    ['dss-sim', ['--key', 'abcdef01234567890000000000000001', '--events', '/no/such/events.jsonl'], /--events file \/no\/such\/events.jsonl: no such file/],
    ['dss-sim', [], /give at least one --key/],
    ['device', ['lamp-1', '--mint', '--ping-interval', 'soon'], /--ping-interval must be/],
  ])('npm run %s -- %j', async (script, args, reason) => {
    const cli = runScript(script, args as string[]);
    expect(await cli.exited).toBe(64);
    expect(cli.stderr()).toMatch(reason);
    expect(cli.stderr()).toContain(`usage: npm run ${script === 'token' ? '-s token' : script}`);
    expect(cli.stderr()).not.toMatch(/\n\s+at /); // no stack frames
    expect(cli.stdout()).toBe('');
  });

  it('an --events line that is not an event says why in one line', async () => {
    const file = path.join(os.tmpdir(), `iotws-bad-events-${process.pid}.jsonl`);
    fs.writeFileSync(file, '{"type":"datapoint","dsn":"AC01"}\n');
    try {
      const cli = runScript('dss-sim', ['--key', 'abcdef01234567890000000000000001', '--events', file]);
      expect(await cli.exited).toBe(64);
      expect(cli.stderr()).toMatch(/:1: not an event the simulator knows \([^\n]*at property[^\n]*\)\nusage: /);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('--help prints the usage on stdout and exits 0', async () => {
    for (const script of ['token', 'device', 'dss-sim']) {
      const cli = runScript(script, ['--help']);
      expect(await cli.exited).toBe(0);
      expect(cli.stdout()).toMatch(/^usage: /);
    }
  });

  it('bin entries point at the built CLIs', async () => {
    const { bin } = (await import('../../package.json', { with: { type: 'json' } })).default as { bin: Record<string, string> };
    expect(bin).toEqual({ 'iotws-token': 'dist/cli/mint-token.js', 'iotws-device': 'dist/cli/device-sim.js', 'iotws-dss-sim': 'dist/cli/dss-sim.js' });
    for (const file of Object.values(bin)) {
      const source = path.join(root, file.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'));
      expect((await import('node:fs')).readFileSync(source, 'utf8').startsWith('#!/usr/bin/env node\n'), source).toBe(true);
    }
  });
});
