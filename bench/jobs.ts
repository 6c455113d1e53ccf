/**
 * `npm run bench -- jobs`: a job over N connected acking devices against the bulk
 * endpoint, in the same run and on the same server (built from src/, its own process, a
 * fresh PostgreSQL database per round). Per round:
 *  - bulk: one actuation per device as POST /v1/actuations of 1,000 items, 4 in flight;
 *  - job: POST /v1/jobs with the same devices as `deviceIds`, no rate limit;
 *    actuations/s = devices / (last receipt - POST), and the server's RSS before and at
 *    its peak while the job runs (sampled every 250 ms);
 *  - paced: a job with `maxPerMinute` (default 6,000 = 100/s) over `--paced-seconds`
 *    worth of devices; its release rate per 10 s window (from job_targets.released_at);
 *  - --rss-targets N: a job over N ids that are not connected, POSTed to a second instance
 *    (JOBS_ENABLED=false) on the same database and released by the round's server: the
 *    releasing instance's RSS (what issue 15 bounds) apart from the POSTing one's body parse.
 * --before REF: every round also runs the server as built from git REF (its own database),
 * the two in alternating order, so a change is measured against what it replaces in one run.
 * Devices: bench/device-client.ts (raw sockets, real RS256 tokens), acking every actuation.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { buildRefForBench, type BenchBuild } from './lib/build.js';
import { int, log } from './lib/cli.js';
import type { BenchDatabaseServer } from './lib/database.js';
import { connectDevices, listen, resetDevices, waitForReceipts } from './lib/devices.js';
import { startServer, type BenchKeys, type RunningServer } from './lib/our-server.js';
import { killChild, rssKiB, sleep } from './lib/processes.js';
import { prepareBenchRun } from './lib/setup.js';
import { fmt, median, renderTables } from './lib/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEVICE_SCRIPT = path.join(ROOT, 'bench', 'device-client.ts');
const COMMAND = { componentId: 'bench', command: 'set', params: [{ name: 't', value: '1' }] };

const usage = `usage: npm run bench -- jobs [options]
  --devices N          connected acking devices, one actuation each per run (default 5000, at most 9000)
  --rounds R           rounds, each with a fresh server and database (default 2)
  --rate R             maxPerMinute of the paced job (default 6000)
  --paced-seconds S    length of the paced job at that rate (default 30: three 10 s windows)
  --rss-targets N      also a job over N device ids that are not connected (their actuations stay queued),
                       no rate limit, POSTed to a second instance (JOBS_ENABLED=false) on the same database and
                       released by the round's server: the RSS of each (default 0: skip)
  --rss-trace FILE     write the releasing server's process.memoryUsage() every 500 ms to FILE (JSON lines)
  --server-node-arg A  a node option for both servers, e.g. --server-node-arg=--max-semi-space-size=64 (repeatable)
  --before REF         also run every round with the server as built from git REF (e.g. main), in alternating order
  --heap-sample FILE   sampling heap profile of the releasing server, allocations by function, written at each full GC
                       of the --rss-targets job (FILE.<round>: JSON lines, the first covers the rounds' start)
  --now-node-arg A     a node option for the servers built from src/ only (with --before HEAD: a flag against none, one run)`;

interface RoundResult {
  bulkPerSec: number;
  jobPerSec: number;
  jobCompletedSec: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  windows: number[];
  /** The --rss-targets job. */
  big?: BigJob;
  received: { bulk: number; job: number; paced: number };
}

/** The --rss-targets job: POSTed to one instance (JOBS_ENABLED=false), released by the other; RSS in MiB. */
interface BigJob {
  perSec: number;
  /** The releasing instance: before (after a full GC), peak while releasing, at the last release, after a full GC. */
  release: { before: number; peak: number; atEnd: number; after: number };
  /** The instance that took the POST (parsed and validated the body, inserted the targets): before and peak. */
  post: { before: number; peak: number };
}

interface Context {
  database: BenchDatabaseServer;
  build: BenchBuild;
  keys: BenchKeys;
  tmp: string;
  deviceClients: ChildProcess[];
  deviceIds: string[];
  rate: number;
  pacedSeconds: number;
  rssTargets: number;
  /** Where to write the releasing instance's process.memoryUsage() samples (--rss-trace), if anywhere. */
  rssTrace: string | undefined;
  /** Node options for both servers (--server-node-arg), e.g. a V8 young-generation size. */
  serverNodeArgs: string[];
  /** Node options for the servers built from src/ only (--now-node-arg). */
  nowNodeArgs: string[];
  /** Where to write the releasing instance's allocations by function (--heap-sample), if anywhere. */
  heapSample: string | undefined;
}

/** Which server a round runs: the one built from src/ (`now`), or from git --before REF. */
type Build = 'now' | 'before';

export async function jobsBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '2' },
      rate: { type: 'string', default: '6000' },
      'paced-seconds': { type: 'string', default: '30' },
      'rss-targets': { type: 'string', default: '0' },
      'rss-trace': { type: 'string' },
      'server-node-arg': { type: 'string', multiple: true },
      before: { type: 'string' },
      'now-node-arg': { type: 'string', multiple: true },
      'heap-sample': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return 0;
  }
  const devices = int('devices', values.devices, 10, 9_000);
  const rounds = int('rounds', values.rounds, 1, 9);
  const rate = int('rate', values.rate, 60, 1_000_000);
  const pacedSeconds = int('paced-seconds', values['paced-seconds'], 10, 600);
  const rssTargets = int('rss-targets', values['rss-targets'], 0, 100_000);
  log(`jobs bench: ${fmt(devices)} acking devices; bulk endpoint vs a job without rate limit, then a job at ${fmt(rate)}/min for ${pacedSeconds} s; ${rounds} round(s)`);
  const run = await prepareBenchRun({ root: ROOT, deviceScript: DEVICE_SCRIPT, devices, fsync: true, cpuProf: false, log });
  const ctx: Context = { database: run.database, build: run.build, keys: run.keys, tmp: run.tmp, deviceClients: [run.deviceClient], deviceIds: run.deviceIds, rate, pacedSeconds, rssTargets, rssTrace: values['rss-trace'], serverNodeArgs: values['server-node-arg'] ?? [], nowNodeArgs: values['now-node-arg'] ?? [], heapSample: values['heap-sample'] };
  const beforeMain = values.before ? await buildRefForBench(ROOT, values.before) : undefined;
  const scripts: Record<Build, string | undefined> = { now: ctx.build.serverMain, before: beforeMain };
  const all: Record<Build, RoundResult[]> = { now: [], before: [] };
  for (let round = 1; round <= rounds; round++) {
    // Alternating order: neither build always runs first in a round (the machine's load drifts).
    const order: Build[] = !beforeMain ? ['now'] : round % 2 === 1 ? ['before', 'now'] : ['now', 'before'];
    for (const build of order) {
      const r = await runRound(ctx, round, build, scripts[build]!);
      all[build].push(r);
      log(
        `round ${round}${beforeMain ? ` (${build === 'now' ? 'now' : `before: ${values.before}`})` : ''}: bulk ${fmt(r.bulkPerSec)}/s, job ${fmt(r.jobPerSec)}/s (${fmt(r.jobPerSec / r.bulkPerSec, 2)}×; completed after ${fmt(r.jobCompletedSec, 1)} s), ` +
          `RSS ${fmt(r.rssBeforeMiB, 1)} → peak ${fmt(r.rssPeakMiB, 1)} MiB; paced windows ${r.windows.map((w) => fmt(w, 1)).join(', ')} /s` +
          (r.big
            ? `; ${fmt(rssTargets)}-target job ${fmt(r.big.perSec)} released/s, releasing RSS ${fmt(r.big.release.before, 1)} → peak ${fmt(r.big.release.peak, 1)} → ${fmt(r.big.release.atEnd, 1)} at the end → ${fmt(r.big.release.after, 1)} MiB after a GC, ` +
              `POSTing RSS ${fmt(r.big.post.before, 1)} → peak ${fmt(r.big.post.peak, 1)} MiB`
            : ''),
      );
    }
  }
  const tables = (beforeMain ? (['before', 'now'] as const) : (['now'] as const)).map((build) =>
    summary(all[build], { devices, rounds, rate, rssTargets, title: beforeMain ? (build === 'now' ? 'now (src/)' : `before (${values.before})`) : undefined }),
  );
  process.stdout.write(`\n${tables.map((t) => t.text).join('\n\n')}\n\nMarkdown (${ctx.database.description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${tables.map((t) => t.markdown).join('\n\n')}\n`);
  const expected = rate / 60;
  const lost = [...all.now, ...all.before].filter((r) => r.received.bulk < devices || r.received.job < devices || r.received.paced < Math.min(devices, Math.round(expected * pacedSeconds)));
  if (lost.length > 0) {
    log(`\nINVALID: ${lost.length} round(s) did not deliver every actuation; see above.`);
    return 1;
  }
  return 0;
}

/** The table of one build's rounds (medians). */
function summary(results: RoundResult[], o: { devices: number; rounds: number; rate: number; rssTargets: number; title: string | undefined }): { text: string; markdown: string } {
  const { devices, rounds, rate, rssTargets } = o;
  const m = (f: (r: RoundResult) => number) => median(results.map(f));
  const expected = rate / 60;
  const worst = m((r) => Math.max(...r.windows.map((w) => Math.abs(w - expected) / expected)));
  const ratio = m((r) => r.jobPerSec / r.bulkPerSec);
  const header = [`${fmt(devices)} acking devices, median of ${rounds}${o.title ? `: ${o.title}` : ''}`, 'figure', 'target'];
  const rows = [
    ['bulk POST (1,000 items, 4 in flight) → device, actuations/s', fmt(m((r) => r.bulkPerSec)), ''],
    ['job, no rate limit → device, actuations/s', fmt(m((r) => r.jobPerSec)), ''],
    ['job / bulk', `${fmt(ratio, 2)}× (rounds: ${results.map((r) => fmt(r.jobPerSec / r.bulkPerSec, 2)).join(', ')})`, `≥ 0.8× (${ratio >= 0.8 ? 'met' : 'MISSED'})`],
    [`paced job at ${fmt(rate)}/min: release rate per 10 s window`, `${results.flatMap((r) => r.windows).map((w) => fmt(w, 1)).join(', ')} /s`, `±5% of ${fmt(expected)}/s (worst ${fmt(worst * 100, 1)}%: ${worst <= 0.05 ? 'met' : 'MISSED'})`],
    ['server RSS while the job runs, before → peak', `${fmt(m((r) => r.rssBeforeMiB), 1)} → ${fmt(m((r) => r.rssPeakMiB), 1)} MiB (+${fmt(m((r) => r.rssPeakMiB - r.rssBeforeMiB), 1)})`, ''],
  ];
  if (results.every((r) => r.big)) {
    const b = (f: (big: BigJob) => number) => m((r) => f(r.big!));
    const growth = b((x) => x.release.peak - x.release.before);
    rows.push(
      [
        `job over ${fmt(rssTargets)} devices (not connected): the releasing instance's RSS before → peak → at the last release → after a full GC`,
        `${fmt(b((x) => x.release.before), 1)} → ${fmt(b((x) => x.release.peak), 1)} → ${fmt(b((x) => x.release.atEnd), 1)} → ${fmt(b((x) => x.release.after), 1)} MiB (peak +${fmt(growth, 1)}; ${fmt(b((x) => x.perSec))} released/s)`,
        `< +50 MiB (${growth < 50 ? 'met' : 'MISSED'})`,
      ],
      [
        `the same job: the POSTing instance's RSS (JOBS_ENABLED=false; parses the ${fmt(rssTargets)} ids), before → peak`,
        `${fmt(b((x) => x.post.before), 1)} → ${fmt(b((x) => x.post.peak), 1)} MiB (+${fmt(b((x) => x.post.peak - x.post.before), 1)})`,
        '',
      ],
    );
  }
  return renderTables(header, rows);
}

async function runRound(ctx: Context, round: number, build: Build, script: string): Promise<RoundResult> {
  const tag = `j${round}${build === 'now' ? '' : 'b'}`;
  const db = await ctx.database.create(tag);
  let server: RunningServer | undefined;
  const client = new pg.Client(db.url);
  const samplers: NodeJS.Timeout[] = [];
  try {
    const nodeArgs = [...ctx.serverNodeArgs, ...(build === 'now' ? ctx.nowNodeArgs : []), ...(ctx.rssTrace ? ['--import', memoryTraceImport(`${ctx.rssTrace}.${round}${build === 'now' ? '' : '.before'}`)] : []), ...(ctx.heapSample ? ['--import', heapSampleImport(`${ctx.heapSample}.${round}${build === 'now' ? '' : '.before'}`)] : [])];
    server = await startServer({ kind: 'ours', script, databaseUrl: db.url, keys: ctx.keys, tmp: ctx.tmp, instanceId: `bench-${process.pid}-${tag}`, nodeArgs });
    await client.connect();
    await connectDevices(ctx.deviceClients, server.port);
    await sleep(1_000);
    const ids = ctx.deviceIds;

    // Warm-up (JIT, pool, plans): one unmeasured bulk request, acked.
    await listen(ctx.deviceClients, true, false);
    const warm = ids.slice(0, 1_000);
    const warmed = await server.api('POST', '/v1/actuations', warm.map((deviceId) => ({ deviceId, ...COMMAND })));
    if (warmed.status !== 200) throw new Error(`warm-up bulk POST: ${warmed.status}`);
    await waitForReceipts(ctx.deviceClients, warm.length, { quietMs: 10_000, timeoutMs: 120_000 });
    await sleep(1_000);

    // Bulk: one actuation per device, 1,000 items a request, 4 requests in flight.
    await listen(ctx.deviceClients, true, false);
    const bulkStart = Date.now();
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += 1_000) chunks.push(ids.slice(i, i + 1_000));
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < chunks.length) {
          const chunk = chunks[next++]!;
          const res = await server!.api('POST', '/v1/actuations', chunk.map((deviceId) => ({ deviceId, ...COMMAND })));
          if (res.status !== 200) throw new Error(`bulk POST: ${res.status} ${JSON.stringify(res.json).slice(0, 200)}`);
        }
      }),
    );
    const bulk = await waitForReceipts(ctx.deviceClients, ids.length, { quietMs: 10_000, timeoutMs: 300_000 });
    await sleep(2_000);

    // A job over the same devices, no rate limit.
    await listen(ctx.deviceClients, true, false);
    const rssBefore = rssKiB(server.server.pid);
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssOrZero(server!.server.pid))), 250);
    samplers.push(sampler);
    const jobStart = Date.now();
    const created = await server.api('POST', '/v1/jobs', { name: 'bench', target: { deviceIds: ids }, actuation: COMMAND });
    if (created.status !== 201) throw new Error(`POST /v1/jobs: ${created.status} ${JSON.stringify(created.json).slice(0, 200)}`);
    const jobId = (created.json as { id: string }).id;
    const job = await waitForReceipts(ctx.deviceClients, ids.length, { quietMs: 10_000, timeoutMs: 300_000 });
    const completedAt = await waitForJob(server, jobId, 'completed', 120_000);
    clearInterval(sampler);

    // A paced job: its releases per 10 s window.
    await listen(ctx.deviceClients, true, false);
    const pacedCount = Math.min(ids.length, Math.round((ctx.rate / 60) * ctx.pacedSeconds));
    const paced = await server.api('POST', '/v1/jobs', { name: 'paced', target: { deviceIds: ids.slice(0, pacedCount) }, actuation: COMMAND, rollout: { maxPerMinute: ctx.rate } });
    if (paced.status !== 201) throw new Error(`POST /v1/jobs (paced): ${paced.status}`);
    const pacedId = (paced.json as { id: string }).id;
    const pacedGot = await waitForReceipts(ctx.deviceClients, pacedCount, { quietMs: 10_000, timeoutMs: (ctx.pacedSeconds + 60) * 1000 });
    // A device has its actuation once the submitter commits, before the releaser marks that page
    // released: read released_at only once the job is completed (which needs every target
    // released), or the last page can still be null (the "2 of 2,000" seen once, README).
    await waitForJob(server, pacedId, 'completed', 120_000);
    const { rows } = await client.query<{ w: number; n: number }>(
      `with t as (select released_at, min(released_at) over () as first from job_targets where job_id = $1)
       select floor(extract(epoch from released_at - first) / 10)::int as w, count(*)::int as n from t group by 1 order by 1`,
      [pacedId],
    );
    const fullWindows = Math.floor(pacedCount / ((ctx.rate / 60) * 10));

    const big = ctx.rssTargets > 0 ? await rssJob(ctx, db.url, server, tag, script, build === 'now' ? [...ctx.serverNodeArgs, ...ctx.nowNodeArgs] : ctx.serverNodeArgs) : undefined;
    return {
      big,
      bulkPerSec: (bulk.count / (bulk.lastMs - bulkStart)) * 1000,
      jobPerSec: (job.count / (job.lastMs - jobStart)) * 1000,
      jobCompletedSec: (completedAt - jobStart) / 1000,
      rssBeforeMiB: rssBefore / 1024,
      rssPeakMiB: rssPeak / 1024,
      // Whole windows only (the last one is cut off where the job ends).
      windows: rows.filter((r) => r.w < fullWindows).map((r) => r.n / 10),
      received: { bulk: bulk.count, job: job.count, paced: pacedGot.count },
    };
  } finally {
    samplers.forEach(clearInterval);
    await client.end().catch(() => undefined);
    await resetDevices(ctx.deviceClients);
    if (server) await killChild(server.server.child, 'SIGKILL', 15_000);
    await db.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}

/**
 * The --rss-targets job. A second instance on the round's database with JOBS_ENABLED=false takes
 * the POST (so its body parse is not in the releasing instance's figure) and the round's server
 * releases it. "Before" and "after" follow a full GC in each (SIGUSR2, see SERVER_HOOK), so they
 * hold no garbage of the earlier phases; the peaks are sampled every 250 ms.
 */
async function rssJob(ctx: Context, databaseUrl: string, releaser: RunningServer, tag: string, script: string, nodeArgs: string[]): Promise<BigJob> {
  const poster = await startServer({ kind: 'ours', script, databaseUrl, keys: ctx.keys, tmp: ctx.tmp, instanceId: `bench-${process.pid}-${tag}-post`, nodeArgs, env: { JOBS_ENABLED: 'false' } });
  const timers: NodeJS.Timeout[] = [];
  try {
    const targets = Array.from({ length: ctx.rssTargets }, (_, i) => `rss-target-${i}`);
    await fullGc([releaser, poster]);
    const release = { before: rssKiB(releaser.server.pid), peak: 0, atEnd: 0, after: 0 };
    const post = { before: rssKiB(poster.server.pid), peak: 0 };
    release.peak = release.before;
    post.peak = post.before;
    timers.push(
      setInterval(() => {
        release.peak = Math.max(release.peak, rssOrZero(releaser.server.pid));
        post.peak = Math.max(post.peak, rssOrZero(poster.server.pid));
      }, 250),
    );
    const start = Date.now();
    const res = await poster.api('POST', '/v1/jobs', { name: 'rss', target: { deviceIds: targets }, actuation: COMMAND });
    if (res.status !== 201) throw new Error(`POST /v1/jobs (rss): ${res.status} ${JSON.stringify(res.json).slice(0, 200)}`);
    const bigId = (res.json as { id: string }).id;
    const deadline = Date.now() + 600_000;
    for (;;) {
      const j = (await releaser.api('GET', `/v1/jobs/${bigId}`)).json as { released?: number };
      if (j.released === ctx.rssTargets) break;
      if (Date.now() > deadline) throw new Error(`rss job not released within 600 s: ${JSON.stringify(j).slice(0, 200)}`);
      await sleep(500);
    }
    const perSec = (ctx.rssTargets / (Date.now() - start)) * 1000;
    timers.forEach(clearInterval);
    release.atEnd = rssKiB(releaser.server.pid);
    await fullGc([releaser]);
    release.after = rssKiB(releaser.server.pid);
    const mib = (kib: number) => kib / 1024;
    return {
      perSec,
      release: { before: mib(release.before), peak: mib(release.peak), atEnd: mib(release.atEnd), after: mib(release.after) },
      post: { before: mib(post.before), peak: mib(post.peak) },
    };
  } finally {
    timers.forEach(clearInterval);
    await killChild(poster.server.child, 'SIGKILL', 15_000);
  }
}

/** A full GC in each server (SIGUSR2 to the bench hook), then a second for it to take. */
async function fullGc(servers: RunningServer[]): Promise<void> {
  for (const s of servers) s.server.child.kill('SIGUSR2');
  await sleep(1_000);
}

/**
 * An `--import` for the server that appends process.memoryUsage() to `file` every 500 ms (--rss-trace),
 * with each V8 heap space's committed size (`<space>Size`) and used bytes (`<space>Used`): the young
 * generation (new_space) apart from the old one (old_space, large_object_space, ...); and the
 * scavenges (`gcMinor`) and mark-compacts (`gcMajor`) so far.
 */
function memoryTraceImport(file: string): string {
  const code = `
import fs from 'node:fs';
import v8 from 'node:v8';
const file = ${JSON.stringify(file)};
import { PerformanceObserver, constants } from 'node:perf_hooks';
const spaces = () => Object.fromEntries(v8.getHeapSpaceStatistics().flatMap((s) => [[s.space_name + 'Size', s.space_size], [s.space_name + 'Used', s.space_used_size]]));
let gcMinor = 0, gcMajor = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) gcMinor++;
    else if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcMajor++;
  }
}).observe({ entryTypes: ['gc'] });
setInterval(() => fs.appendFileSync(file, JSON.stringify({ t: Date.now(), ...process.memoryUsage(), ...spaces(), gcMinor, gcMajor }) + '\\n'), 500).unref();
`;
  return `data:text/javascript;base64,${Buffer.from(code).toString('base64')}`;
}

/**
 * An `--import` for the server that samples allocations (the inspector's sampling heap profiler, objects
 * collected by either GC included) and, at each SIGUSR2 (the bench's full GC), appends the bytes allocated
 * since the previous one by function (top 40) to `file`, then starts afresh (--heap-sample).
 */
function heapSampleImport(file: string): string {
  const code = `
import fs from 'node:fs';
import inspector from 'node:inspector';
const file = ${JSON.stringify(file)};
const session = new inspector.Session();
session.connect();
const start = () => session.post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
start();
let since = Date.now();
process.on('SIGUSR2', () => {
  session.post('HeapProfiler.getSamplingProfile', (err, res) => {
    if (err) return;
    const byFn = new Map();
    let total = 0;
    const walk = (n) => {
      const f = n.callFrame;
      const key = (f.functionName || '(anonymous)') + ' ' + f.url.replace(/^.*\\/(node_modules|dist)\\//, '$1/') + ':' + (f.lineNumber + 1);
      byFn.set(key, (byFn.get(key) || 0) + n.selfSize);
      total += n.selfSize;
      n.children.forEach(walk);
    };
    walk(res.profile.head);
    const top = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([fn, bytes]) => ({ fn, kib: Math.round(bytes / 1024) }));
    fs.appendFileSync(file, JSON.stringify({ from: since, to: Date.now(), totalKiB: Math.round(total / 1024), top }) + '\\n');
    since = Date.now();
    session.post('HeapProfiler.stopSampling', () => start());
  });
});
`;
  return `data:text/javascript;base64,${Buffer.from(code).toString('base64')}`;
}

async function waitForJob(server: RunningServer, id: string, state: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await server.api('GET', `/v1/jobs/${id}`);
    const job = res.json as { state?: string; finishedAt?: string };
    if (job.state === state && job.finishedAt) return new Date(job.finishedAt).getTime();
    if (Date.now() > deadline) throw new Error(`job ${id} not ${state} within ${timeoutMs} ms: ${JSON.stringify(job).slice(0, 300)}`);
    await sleep(200);
  }
}

/** RSS in KiB, 0 once the process is gone (the round's own error says why). */
function rssOrZero(pid: number): number {
  try {
    return rssKiB(pid);
  } catch {
    return 0;
  }
}
