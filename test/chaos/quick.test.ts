/**
 * The quick chaos scenarios, as `npm run chaos -- <name>` runs them, scaled down for
 * CI (fewer devices and POSTs/s; the outages keep their real length, 10 s). Each
 * spawns the chaos tool, which starts its own PostgreSQL (or uses DATABASE_URL), the
 * built server behind its proxy, devices and load, and must print a PASS verdict and
 * exit 0. The server is built once here and handed over with --server-main.
 *
 * They can fail: against the server before the database-resilience work, db-refuse
 * fails on acks lost in the outage, db-blackhole on REST calls that hang for good,
 * listen-loss on a LISTEN connection never replaced, poison on 500s, and
 * stalled-reader on unbounded memory (see the README's "Chaos scenarios").
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildForBench } from '../../bench/lib/build.js';
import { cleanup } from '../../bench/lib/processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCALED = ['--devices', '50', '--rate', '50'];
const QUICK: [string, string[]][] = [
  ['db-refuse', SCALED],
  ['db-blackhole', SCALED],
  ['listen-loss', SCALED],
  ['sigkill', ['--devices', '100', '--rate', '150']],
  ['poison', SCALED],
  ['stalled-reader', SCALED],
  ['worker-kill', ['--devices', '100', '--rate', '150']],
];

let serverMain = '';
beforeAll(async () => {
  serverMain = (await buildForBench(ROOT)).serverMain;
}, 240_000);
afterAll(() => cleanup());

function runChaos(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'chaos/run.ts', ...args], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    // SIGTERM lets the tool clean up its processes; the verdict then says FAIL.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('npm run chaos, quick scenarios', () => {
  it('rejects bad arguments with usage and exit 64', async () => {
    const { code, output } = await runChaos(['no-such-scenario'], 30_000);
    expect(code).toBe(64);
    expect(output).toContain('usage: npm run chaos');
  });

  for (const [name, args] of QUICK) {
    it(`${name}: PASS`, async () => {
      const started = Date.now();
      const { code, output } = await runChaos([name, ...args, '--server-main', serverMain], 110_000);
      const verdict = output.split('\n').findLast((l) => l.startsWith(`chaos ${name}: `)) ?? `no verdict line:\n${output.slice(-3_000)}`;
      expect(verdict, output.slice(-6_000)).toMatch(new RegExp(`^chaos ${name}: PASS`));
      expect(code).toBe(0);
      // The run, set-up included (the build is done above), must fit in 60 s.
      const seconds = Number(/(\d+(?:\.\d+)?) s\)$/.exec(verdict)?.[1]);
      expect(seconds, verdict).toBeLessThanOrEqual(60);
      expect(Date.now() - started).toBeLessThan(110_000);
    }, 120_000);
  }
});
