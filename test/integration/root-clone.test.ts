/**
 * The README's two commands from a clone in a directory only root may enter (a
 * `mktemp -d`, 0700, as /root is), run as root — as containers, CI runners and a fresh
 * VM's first login do. PostgreSQL then runs as the `postgres` OS user, which can reach
 * neither the clone's node_modules nor its ./data.
 *
 * - `npm start` (build, embedded PostgreSQL, listen) answers /readyz; SIGTERM to the npm
 *   process itself reaches node (`exec`), which exits and leaves nothing listening.
 * - `npm start` again, a device connected, SIGINT to the whole process group (what Ctrl-C
 *   in a terminal does): PostgreSQL, in a process group of its own, is not hit; the
 *   server closes the session row (1001) and stops PostgreSQL last.
 * - `npm test`'s database set-up (vitest's global set-up, here for one small test file)
 *   with TMPDIR in a 0700 directory too.
 *
 * node_modules is hard-linked from this checkout instead of installed (same files, no network).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/db/embedded-postgres.js';
import { mintDeviceToken } from '../../src/gateway/device-token.js';
import { connectAuthenticated } from '../helpers/device-client.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const asRoot = os.userInfo().uid === 0;
let home: string;
let clone: string;
const movedClusters = new Set<string>();
/** Postmasters started by the servers under test: stopped in afterAll should a test fail half-way (they run in their own process groups). */
const postmasters = new Set<number>();

beforeAll(() => {
  if (!asRoot) return;
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-root-'));
  expect(fs.statSync(home).mode & 0o777).toBe(0o700);
  clone = path.join(home, 'clone');
  const cloned = spawnSync('git', ['clone', '--quiet', root, clone], { encoding: 'utf8' });
  expect(cloned.status, cloned.stderr).toBe(0);
  const linked = spawnSync('cp', ['-al', path.join(root, 'node_modules'), path.join(clone, 'node_modules')], { encoding: 'utf8' });
  expect(linked.status, linked.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  if (!asRoot) return;
  for (const pid of postmasters) {
    if (!alive(pid)) continue;
    process.kill(pid, 'SIGQUIT');
    for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  }
  for (const dir of movedClusters) fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  text: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(msg: string, timeoutMs: number): Promise<Record<string, unknown>>;
}

/** `npm start` in the clone, in a process group of its own (as a terminal's foreground job is). */
function npmStart(port: number): Started {
  const child = spawn('npm', ['start'], {
    cwd: clone,
    env: { PATH: process.env.PATH, HOME: home, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    raw += line + '\n';
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // npm's banner
    }
  });
  child.stderr!.on('data', (d: Buffer) => (raw += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    lines,
    text: () => raw,
    exited,
    async waitFor(msg, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find((l) => l.msg === msg);
        if (found) return found;
        if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}) before "${msg}":\n${raw}`);
        if (Date.now() > deadline) throw new Error(`no "${msg}" within ${timeoutMs} ms:\n${raw}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe.skipIf(!asRoot)('as root, from a clone in a 0700 directory', () => {
  it('npm start runs PostgreSQL as the postgres user from binaries and a data directory it can reach; SIGTERM to npm stops node', async () => {
    const port = await freePort();
    const server = npmStart(port);
    try {
      // npm start builds first (tsc), then initialises the cluster: minutes on a loaded machine.
      await server.waitFor('server: listening', 300_000);
      const started = server.lines.find((l) => l.msg === 'embedded postgres: started')!;
      const dataDir = String(started.dataDir);
      movedClusters.add(dataDir);
      postmasters.add(Number(started.pid));
      // ./data is out of the postgres user's reach, so the cluster went to /var/lib.
      expect(dataDir.startsWith('/var/lib/iot-websocket-server/')).toBe(true);
      expect(server.lines.some((l) => l.msg === 'embedded postgres: the postgres OS user cannot reach DATA_DIR (running as root), so the database cluster is kept outside it')).toBe(true);
      expect(fs.statSync(dataDir).uid).toBe(Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()));
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

      const postgresPid = Number(started.pid);
      // A supervisor's SIGTERM to `npm start` (npm's own pid, not the group).
      process.kill(server.child.pid!, 'SIGTERM');
      await server.exited;
      await server.waitFor('server: stopped', 15_000);
      expect(await listening(port)).toBe(false);
      const deadline = Date.now() + 15_000;
      while (alive(postgresPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(alive(postgresPid)).toBe(false);
      expect(fs.existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    } finally {
      if (server.child.exitCode === null) process.kill(-server.child.pid!, 'SIGKILL');
    }
  }, 400_000);

  it('Ctrl-C (SIGINT to the whole process group of npm start) reaches the server, not PostgreSQL: sessions are closed, then PostgreSQL stops', async () => {
    const port = await freePort();
    const server = npmStart(port);
    try {
      await server.waitFor('server: listening', 300_000);
      const started = server.lines.find((l) => l.msg === 'embedded postgres: started')!;
      movedClusters.add(String(started.dataDir));
      postmasters.add(Number(started.pid));
      const privateKey = fs.readFileSync(path.join(clone, 'keys', 'private.pem'), 'utf8');
      const device = await connectAuthenticated(`ws://127.0.0.1:${port}/`, 'ctrl-c-lamp', mintDeviceToken(privateKey, 'ctrl-c-lamp'));

      process.kill(-server.child.pid!, 'SIGINT'); // the terminal sends it to the foreground process group
      expect((await device.closed).code).toBe(1001);
      await server.exited;
      await server.waitFor('server: stopped', 15_000);
      const messages = server.lines.map((l) => String(l.msg));
      expect(server.text()).not.toContain('could not close session row');
      expect(messages).not.toContain('server: second signal, exiting now');
      expect(messages).not.toContain('embedded postgres: exited unexpectedly');
      // PostgreSQL stopped last, by the server.
      expect(messages.indexOf('embedded postgres: stopped')).toBeGreaterThan(messages.indexOf('server: shutting down'));
      expect(alive(Number(started.pid))).toBe(false);

      // The row says so on the next start.
      const again = npmStart(port);
      try {
        await again.waitFor('server: listening', 300_000);
        postmasters.add(Number(again.lines.find((l) => l.msg === 'embedded postgres: started')!.pid));
        const { username, password } = JSON.parse(fs.readFileSync(path.join(clone, 'data', 'api-credentials.json'), 'utf8')) as { username: string; password: string };
        const res = await fetch(`http://127.0.0.1:${port}/v1/devices/ctrl-c-lamp/sessions`, {
          headers: { authorization: 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64') },
        });
        expect(await res.json()).toMatchObject({ items: [{ closeCode: 1001, closeReason: 'server shutting down' }] });
        process.kill(again.child.pid!, 'SIGTERM');
        await again.exited;
      } finally {
        if (again.child.exitCode === null) process.kill(-again.child.pid!, 'SIGKILL');
      }
    } finally {
      if (server.child.exitCode === null) process.kill(-server.child.pid!, 'SIGKILL');
    }
  }, 600_000);

  it("npm test's database set-up works with TMPDIR in a 0700 directory too", () => {
    const tmp = fs.mkdtempSync(path.join(home, 'tmp-'));
    expect(fs.statSync(tmp).mode & 0o777).toBe(0o700);
    const result = spawnSync('npx', ['vitest', 'run', 'test/unit/storable.test.ts'], {
      cwd: clone,
      env: { PATH: process.env.PATH, HOME: home, TMPDIR: tmp },
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Tests\s+\d+ passed/);
  }, 300_000);
});
