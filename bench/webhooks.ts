/**
 * `npm run bench -- webhooks`: events in the `events` table -> one webhook endpoint.
 *
 * Our server (the bench build, its own process) sends to one receiver in this process
 * (an HTTP server on 127.0.0.1 answering 204 at once). Events are appended the way the
 * change feed's sequencer does: a pass every 10 ms inserts the next ids and NOTIFYs
 * `iotws_events`. Per round:
 * - latency at a fixed rate (`--rate` events/s for `--seconds`): from the pass's commit
 *   (seen by this process) to the receiver getting the event, p50/p99/max; and the
 *   server's and PostgreSQL's CPU per delivery at that rate (the steady state: an endpoint
 *   caught up, a few events per batch; until all of the run's events arrived);
 * - throughput of one endpoint: `--burst` events appended at once, delivered one at a
 *   time in order (one request in flight per endpoint); events/s and the server's and
 *   PostgreSQL's CPU per delivery.
 * Every event must arrive exactly once and in order, or the run is INVALID.
 * `--before REF` also runs our server as built from git REF in every round (the two
 * alternating which goes first): a before/after on the same machine state.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { buildForBench, buildRefForBench } from './lib/build.js';
import { summariseCpuProfiles } from './lib/cpu-profile.js';
import { int, log, settled } from './lib/cli.js';
import { databaseCpu, startBenchDatabase } from './lib/database.js';
import { makeKeys, startServer } from './lib/our-server.js';
import { cpuMs, killChild, onCleanup, sleep } from './lib/processes.js';
import { fmt, median, percentile, renderTables } from './lib/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PASS_MS = 10;

interface RoundResult {
  p50: number;
  p99: number;
  max: number;
  perSec: number;
  serverCpuUs: number;
  dbCpuUs: number;
  /** At the fixed rate, per delivery. */
  steadyServerCpuUs: number;
  steadyDbCpuUs: number;
  valid: boolean;
}

export async function webhooksBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '10' },
      burst: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '3' },
      'cpu-prof': { type: 'boolean', default: false },
      before: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    log('npm run bench -- webhooks [--rate 500] [--seconds 10] [--burst 5000] [--rounds 3] [--cpu-prof] [--before REF]');
    log('  --before REF  also run our server as built from git REF (e.g. main) in every round, alternating which goes first');
    log('  --env K=V     (repeatable) set K=V for this tree\'s server only, e.g. --before HEAD --env WEBHOOK_GATHER_MS=0: one setting both ways');
    log('  --cpu-prof  V8 CPU profile of the server for each whole round, summarised at the end (figures not comparable)');
    return 0;
  }
  const rate = int('rate', values.rate, 1, 100_000);
  const seconds = int('seconds', values.seconds, 1, 600);
  const burst = int('burst', values.burst, 1, 1_000_000);
  const rounds = int('rounds', values.rounds, 1, 20);

  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-'));
  onCleanup(() => fs.rm(tmp, { recursive: true, force: true }));
  const [database, build, keys] = settled(await Promise.allSettled([startBenchDatabase({ fsync: true }), buildForBench(ROOT), makeKeys(tmp)] as const));
  const profDir = values['cpu-prof'] ? path.join(tmp, 'profiles') : undefined;
  if (profDir) await fs.mkdir(profDir);
  const beforeMain = values.before ? await buildRefForBench(ROOT, values.before) : undefined;
  const treeEnv = Object.fromEntries(
    values.env.map((kv) => {
      const at = kv.indexOf('=');
      if (at < 1) throw new Error(`--env takes K=V, not ${kv}`);
      return [kv.slice(0, at), kv.slice(at + 1)];
    }),
  );
  log(`webhooks bench: ${rate} events/s for ${seconds} s, then a burst of ${fmt(burst)}; one endpoint; ${rounds} round(s); database: ${database.description}`);

  const treeLabel = values.env.length > 0 ? `this tree, ${values.env.join(' ')}` : 'this tree';
  const variants = [{ label: treeLabel, script: build.serverMain, env: treeEnv }, ...(beforeMain ? [{ label: `at ${values.before}`, script: beforeMain, env: {} }] : [])];
  const results = new Map<string, RoundResult[]>(variants.map((v) => [v.label, []]));
  for (let round = 1; round <= rounds; round++) {
    // Rotated: each variant goes first in turn.
    for (const [i] of variants.entries()) {
      const variant = variants[(i + round - 1) % variants.length]!;
      const r = await runRound(variant.script, variant.env, round, `${variant.label === treeLabel ? 'a' : 'b'}${round}`);
      results.get(variant.label)!.push(r);
      log(
        `round ${round} ${variant.label}: at ${rate}/s p50 ${fmt(r.p50, 1)} / p99 ${fmt(r.p99, 1)} / max ${fmt(r.max, 1)} ms, server CPU ${fmt(r.steadyServerCpuUs)} µs + PostgreSQL ${fmt(r.steadyDbCpuUs)} µs each; ` +
          `burst ${fmt(r.perSec)} deliveries/s, server CPU ${fmt(r.serverCpuUs)} µs + PostgreSQL ${fmt(r.dbCpuUs)} µs each; ${r.valid ? 'in order, once each' : 'NOT in order once each'}`,
      );
    }
  }

  async function runRound(script: string, env: Record<string, string>, round: number, name: string): Promise<RoundResult> {
    const db = await database.create(`w${name}`);
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    // An idle client losing its connection (the database dropped at the end of the round) is no failure of the bench.
    pool.on('error', (err) => log(`round ${round}: bench pool: ${err.message}`));
    const arrivals = new Map<number, number>();
    const order: number[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const id = Number(req.headers['x-iotws-event-id']);
        if (!arrivals.has(id)) arrivals.set(id, performance.now());
        order.push(id);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const server = await startServer({
        kind: 'ours',
        script,
        databaseUrl: db.url,
        keys,
        tmp,
        instanceId: `bench-${process.pid}-w${round}`,
        env: { WEBHOOK_ALLOW_PRIVATE: 'true', DSS_ENABLED: 'false', ...env },
        // Written at the SIGTERM that ends the round.
        ...(profDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=server-${name}.cpuprofile`] } : {}),
      });
      const created = await server.api('POST', '/v1/webhooks', {
        url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
        events: ['actuation.acked'],
        secret: 'bench-secret-0123456789abcdef',
      });
      if (created.status !== 201) throw new Error(`POST /v1/webhooks: ${created.status} ${JSON.stringify(created.json)}`);
      let nextId = 1;
      const committedAt = new Map<number, number>();
      /** `n` events committed, then a sequencer pass (migration 0019) numbers them and NOTIFYs (or the server's own pass does). */
      const pass = async (n: number) => {
        const first = nextId;
        nextId += n;
        await pool.query(
          `insert into event_rows (type, at, data, device_id)
           select 'actuation.acked', now(), jsonb_build_object('id', gen_random_uuid(), 'deviceId', 'bench-' || (i % 100), 'status', 'acked'), 'bench-' || (i % 100)
           from generate_series($1::bigint, $2::bigint) i order by i`,
          [first, nextId - 1],
        );
        await pool.query('select * from sequence_events(100000)');
        const t = performance.now();
        for (let id = first; id < nextId; id++) committedAt.set(id, t);
      };
      const waitFor = async (count: number, timeoutMs: number) => {
        const deadline = Date.now() + timeoutMs;
        while (arrivals.size < count && Date.now() < deadline) await sleep(20);
      };

      // Fixed rate.
      const dbCpu = await databaseCpu(db.url);
      const steadyDbBefore = await dbCpu.sample();
      const steadyCpuBefore = cpuMs(server.server.pid);
      const perPass = rate / (1000 / PASS_MS);
      let owed = 0;
      const start = performance.now();
      for (let i = 0; performance.now() - start < seconds * 1000; i++) {
        owed += perPass;
        const n = Math.floor(owed);
        owed -= n;
        if (n > 0) await pass(n);
        const wait = start + (i + 1) * PASS_MS - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const fixed = nextId - 1;
      await waitFor(fixed, 60_000);
      const steadyServerCpuUs = ((cpuMs(server.server.pid) - steadyCpuBefore) * 1000) / fixed;
      const steadyDbCpuUs = ((await dbCpu.sample()).since(steadyDbBefore) * 1000) / fixed;
      const latencies = [...committedAt.entries()].filter(([id]) => id <= fixed).map(([id, t]) => (arrivals.get(id) ?? Number.NaN) - t).sort((a, b) => a - b);

      // Burst: one endpoint's throughput.
      const dbBefore = await dbCpu.sample();
      const cpuBefore = cpuMs(server.server.pid);
      const burstStart = performance.now();
      for (let left = burst; left > 0; left -= 1_000) await pass(Math.min(1_000, left));
      await waitFor(fixed + burst, 600_000);
      const burstMs = performance.now() - burstStart;
      const serverCpuUs = ((cpuMs(server.server.pid) - cpuBefore) * 1000) / burst;
      const dbCpuUs = ((await dbCpu.sample()).since(dbBefore) * 1000) / burst;
      await dbCpu.close();
      const total = fixed + burst;
      const inOrderOnce = order.length === total && order.every((id, i) => id === i + 1);
      const r: RoundResult = {
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: latencies.at(-1) ?? Number.NaN,
        perSec: (burst / burstMs) * 1000,
        serverCpuUs,
        dbCpuUs,
        steadyServerCpuUs,
        steadyDbCpuUs,
        valid: inOrderOnce,
      };
      log(`round ${round}: ${fmt(arrivals.size)} of ${fmt(total)} received, ${fmt(order.length)} requests`);
      await killChild(server.server.child, 'SIGTERM');
      return r;
    } finally {
      receiver.closeAllConnections();
      receiver.close();
      await pool.end();
      await db.drop();
    }
  }
  const { markdown, text } = renderTables(
    [`one endpoint, median of ${rounds}`, `p50 / p99 / max at ${rate}/s`, `server + PostgreSQL CPU µs/delivery at ${rate}/s`, 'burst deliveries/s', 'server + PostgreSQL CPU µs/delivery, burst'],
    [...results].map(([label, rs]) => {
      const m = (f: (r: RoundResult) => number, digits = 0) => fmt(median(rs.map(f)), digits);
      return [label, `${m((r) => r.p50, 1)} / ${m((r) => r.p99, 1)} / ${m((r) => r.max, 1)} ms`, `${m((r) => r.steadyServerCpuUs)} + ${m((r) => r.steadyDbCpuUs)}`, m((r) => r.perSec), `${m((r) => r.serverCpuUs)} + ${m((r) => r.dbCpuUs)}`];
    }),
  );
  log(`\n${text}\n\n${markdown}`);
  if (profDir) await summariseCpuProfiles(profDir, log);
  if ([...results.values()].flat().some((r) => !r.valid)) {
    log('\nINVALID: a round lost, duplicated or reordered deliveries; see above.');
    return 1;
  }
  return 0;
}
