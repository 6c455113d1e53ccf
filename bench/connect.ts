/**
 * `npm run bench -- connect --devices N`: N simulated devices connect and
 * authenticate with real RS256 tokens against the real server (built with the
 * project's build, its own process, a fresh PostgreSQL database), then against a
 * bare `ws` server (bench/bare-server.ts: no auth, no database) with the same
 * client and the same N, alternating which goes first in each round.
 *
 * Per server it measures
 *  - connect+auth per second: devices authenticated / (last 200 - first connect);
 *  - server RSS per device: (VmRSS after - VmRSS before) / devices, both read from
 *    /proc/<pid>/status after a settle and a full GC (the same --expose-gc hook in
 *    both servers), "before" taken after a warm-up whose sockets were closed, so
 *    one-off costs (JIT, the database pool filling up) are not charged per device;
 *  - server CPU per device (all threads, /proc schedstat) during the connect phase;
 *  - per-device connect+auth latency p50/p99 (informative).
 * and prints our figures, the bare figures and the ratios, as a text table and as
 * markdown. Only loopback; every phase is bounded; children are always killed.
 */
import crypto from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../src/db/embedded-postgres.js';
import type { ConnectResult } from './device-client.js';
import { buildForBench, buildRefForBench } from './lib/build.js';
import { summariseCpuProfiles } from './lib/cpu-profile.js';
import { databaseCpu, startBenchDatabase, statementStats, type BenchDatabaseServer } from './lib/database.js';
import { attachProfiler, type PhaseProfiler } from './lib/inspector.js';
import { request } from './lib/ipc.js';
import {
  cpuMs,
  forkClient,
  killChild,
  maxOpenFiles,
  onCleanup,
  openFds,
  rssKiB,
  sleep,
  spawnServer,
  waitForPort,
} from './lib/processes.js';
import { fmt, median, percentile, renderTables } from './lib/stats.js';
import { int, log, settled } from './lib/cli.js';
import { allWorkersListening, processTree } from './lib/workers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLIENT_SCRIPT = path.join(ROOT, 'bench', 'device-client.ts');
/**
 * Local ports the device clients bind, split between them: below the kernel's ephemeral
 * range (32768-60999 here), so they take nothing from other processes and spare the
 * kernel its ephemeral-port search, which with ~20,000 ports in use cost the clients
 * more CPU than everything else they do, on the cores the server needs.
 */
const LOCAL_PORTS = { from: 10_000, to: 32_768 };
/** File descriptors a process needs besides device sockets (stdio, epoll, pipes, database pool, listen socket). */
const FD_HEADROOM = 100;

type Kind = 'ours' | 'bare' | 'before';
const LABEL: Record<Kind, string> = { ours: 'iot-websocket-server', bare: 'bare `ws`', before: 'ours at --before' };

interface RunResult {
  kind: Kind;
  round: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  durationMs: number;
  ratePerSec: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  perDeviceKiB: number;
  cpuPerDeviceUs: number;
  /** PostgreSQL CPU (the bench database's backends and the cluster's background processes), when readable in /proc. */
  dbCpuPerDeviceUs: number;
  /** CPU of the device client processes (the load generator shares the machine). */
  clientCpuPerDeviceUs: number;
  p50Ms: number;
  p99Ms: number;
  fdsBefore: number;
  portRetries: number;
  sessionsOpen?: number;
}

const usage = `usage: npm run bench -- connect --devices <N|max> [options]
  --devices N       simulated devices (max = the largest N one server process can hold here)
  --rounds R        rounds; each runs both servers, alternating which goes first (default 1)
  --clients K       device client processes (default: one per 9,950 devices)
  --concurrency C   connects in flight across all clients (default 256)
  --warmup W        devices connected and closed before "RSS before" (default 500)
  --settle-ms MS    quiet time before each RSS reading (default 2000)
  --fsync on|off    embedded PostgreSQL durability (default on; ignored with DATABASE_URL)
  --only ours|bare  run one server only (profiling)
  --before REF      also our server as built from git REF, in the same rounds (rotating which
                    goes first), for a before/after measured on the same machine state
  --workers N       our server with WORKERS=N (a cluster primary and N workers on one port;
                    RSS, CPU and open files summed over all its processes; default 1)
  --kernel-ports    let the kernel pick the clients' local ports (default: bind ports 10000-32767;
                    past ~22,000 devices each client binds its own source address 127.0.0.<c+2>)
  --db-stats        embedded PostgreSQL only: print our server's statements during the connect
                    phase by total time (pg_stat_statements)
  --cpu-prof        profile each server's connect phase (V8, through its inspector on 127.0.0.1;
                    the figures of such a run are not comparable) and print where the time went`;

export async function connectBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string' },
      rounds: { type: 'string', default: '1' },
      clients: { type: 'string' },
      concurrency: { type: 'string', default: '256' },
      warmup: { type: 'string', default: '500' },
      'settle-ms': { type: 'string', default: '2000' },
      fsync: { type: 'string', default: 'on' },
      only: { type: 'string' },
      workers: { type: 'string', default: '1' },
      'cpu-prof': { type: 'boolean', default: false },
      'db-stats': { type: 'boolean', default: false },
      'kernel-ports': { type: 'boolean', default: false },
      before: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.devices) {
    process.stderr.write(`${usage}\n`);
    return values.help ? 0 : 2;
  }
  const fdLimit = maxOpenFiles(process.pid);
  const perProcessMax = Number.isFinite(fdLimit) ? fdLimit - FD_HEADROOM : 50_000;
  const workersArg = int('workers', values.workers, 1, 16);
  // N workers hold N times one process's sockets; the bare server is one process.
  const maxDevices = perProcessMax * workersArg;
  const devices = values.devices === 'max' ? perProcessMax : int('devices', values.devices, 1, maxDevices);
  const rounds = int('rounds', values.rounds, 1, 9);
  const perClientMax = Math.min(9_950, perProcessMax);
  const clients = values.clients ? int('clients', values.clients, 1, 16) : Math.ceil(devices / perClientMax);
  if (Math.ceil(devices / clients) > perProcessMax) throw new Error(`--clients ${clients}: each client would hold more than ${perProcessMax} sockets`);
  const concurrency = int('concurrency', values.concurrency, 1, 4_096);
  const warmup = int('warmup', values.warmup, 0, 5_000);
  const settleMs = int('settle-ms', values['settle-ms'], 0, 60_000);
  const workers = workersArg;
  if (workers > 1 && values['cpu-prof']) throw new Error('--cpu-prof profiles one process: not with --workers');
  if (values.fsync !== 'on' && values.fsync !== 'off') throw new Error('--fsync must be on or off');
  if (values.only !== undefined && values.only !== 'ours' && values.only !== 'bare') throw new Error('--only must be ours or bare');
  if (devices > perProcessMax && values.only !== 'ours') {
    throw new Error(`${fmt(devices)} devices: more than one process holds here (${fmt(perProcessMax)}), so the bare server cannot run; add --only ours`);
  }
  const kinds: Kind[] = values.only ? [values.only as Kind] : ['bare', 'ours'];
  if (values.before !== undefined) kinds.push('before');
  const cpuProf = values['cpu-prof'];

  log(
    `connect bench: ${fmt(devices)} devices, ${clients} client process(es), ${concurrency} connects in flight, ` +
      `warm-up ${warmup}, ${rounds} round(s); open-files limit ${fdLimit} per process (max devices per server here: ${fmt(maxDevices)})`,
  );

  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-'));
  onCleanup(() => fs.rm(tmp, { recursive: true, force: true }));
  const profDir = cpuProf ? await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-prof-')) : undefined;

  // allSettled: nothing may still be starting (a database, a compiler) when cleanup runs after a failure.
  const [database, build, keys] = settled(
    await Promise.allSettled([startBenchDatabase({ fsync: values.fsync === 'on', statementStats: values['db-stats'] }), buildForBench(ROOT), makeKeys(tmp)] as const),
  );
  const beforeMain = values.before !== undefined ? await buildRefForBench(ROOT, values.before) : undefined;
  if (beforeMain) log(`--before ${values.before}: built from git archive of that ref`);
  log(`database: ${database.description}; server built from src/ (tsc -p tsconfig.build.json)`);

  // Device clients: each mints its own share of tokens (in parallel) before any timing starts.
  const children: ChildProcess[] = Array.from({ length: clients }, () => forkClient(CLIENT_SCRIPT));
  const ids = Array.from({ length: devices }, (_, i) => `bench-device-${i}`);
  const warmupIds = Array.from({ length: warmup }, (_, i) => `bench-warmup-${i}`);
  const t0 = Date.now();
  await Promise.all(
    children.map((child, c) =>
      request(child, { op: 'mint', privateKeyPem: keys.privateKeyPem, ids: share(ids, c, clients), warmupIds: share(warmupIds, c, clients), accountId: 'bench-account' }, 'minted', 600_000),
    ),
  );
  log(`minted ${fmt(devices + warmup)} RS256 device tokens in ${fmt((Date.now() - t0) / 1000, 1)} s`);

  const portPlan = values['kernel-ports'] ? undefined : planLocalPorts(children.length, devices, warmup);
  const ctx: RunContext = { database, build, beforeMain, keys, children, devices, concurrency, warmup, settleMs, tmp, profDir, dbStats: values['db-stats'], portPlan, workers };
  const results: RunResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Each server goes first in turn (two: alternating).
    const order = kinds.map((_, i) => kinds[(i + round - 1) % kinds.length]!);
    for (const kind of order) {
      const result = await runOne(ctx, kind, round);
      results.push(result);
      log(
        `round ${round} ${LABEL[kind].padEnd(20)} ${fmt(result.ok)} ok / ${result.failed} failed in ${fmt(result.durationMs)} ms: ` +
          `${fmt(result.ratePerSec)} connect+auth/s, RSS ${fmt(result.rssBeforeKiB / 1024, 1)} -> ${fmt(result.rssAfterKiB / 1024, 1)} MiB = ` +
          `${fmt(result.perDeviceKiB, 2)} KiB/device, CPU ${fmt(result.cpuPerDeviceUs)} µs/device` +
          (Number.isNaN(result.dbCpuPerDeviceUs) ? '' : ` + PostgreSQL ${fmt(result.dbCpuPerDeviceUs)} µs/device`) +
          `, clients ${fmt(result.clientCpuPerDeviceUs)} µs/device, latency p50 ${fmt(result.p50Ms, 1)} / p99 ${fmt(result.p99Ms, 1)} ms` +
          (result.sessionsOpen !== undefined ? `, ${fmt(result.sessionsOpen)} open session rows` : '') +
          (result.portRetries > 0 ? `, ${result.portRetries} local ports skipped (in use)` : '') +
          `; ${result.fdsBefore} files open before the devices` +
          (result.failed > 0 ? `\n  failures: ${JSON.stringify(result.errors)}` : ''),
      );
    }
  }

  const invalid = results.filter((r) => r.failed > 0 || (r.kind !== 'bare' && r.sessionsOpen !== r.ok));
  printSummary(results, { devices, clients, rounds, description: database.description });
  if (beforeMain) printBeforeAfter(results, values.before!);
  if (profDir) await summariseCpuProfiles(profDir, log);
  if (invalid.length > 0) {
    log(`\nINVALID: ${invalid.length} run(s) had failed devices or missing session rows; see above.`);
    return 1;
  }
  return 0;
}

interface RunContext {
  database: BenchDatabaseServer;
  build: { serverMain: string; bareServer: string };
  /** Our server built from --before REF. */
  beforeMain: string | undefined;
  keys: { publicKeyPath: string; privateKeyPem: string };
  children: ChildProcess[];
  devices: number;
  concurrency: number;
  warmup: number;
  settleMs: number;
  tmp: string;
  profDir: string | undefined;
  dbStats: boolean;
  /** WORKERS given to our server. */
  workers: number;
  /** Per client: local port ranges for the devices and the warm-up (disjoint: warm-up sockets linger in TIME_WAIT). */
  portPlan: { localAddress: string; devices: { from: number; to: number }; warmup: { from: number; to: number } }[] | undefined;
}

/**
 * Local ports per client. While every client's share fits in one address's ports, all bind
 * 127.0.0.1 in disjoint blocks; past that (more than ~22,000 devices) each client binds
 * its own source address 127.0.0.<c+2> (all of 127/8 is loopback on Linux) and the whole
 * port range, since a connection is distinct by its source address as well as its port.
 */
function planLocalPorts(clients: number, devices: number, warmup: number): RunContext['portPlan'] {
  const oneAddress = planLocalPortsOnOneAddress(clients, devices, warmup);
  if (oneAddress) return oneAddress;
  const perAddress = planLocalPortsOnOneAddress(1, Math.ceil(devices / clients), Math.ceil(warmup / clients));
  if (!perAddress) throw new Error(`${fmt(devices)} devices do not fit in local ports ${LOCAL_PORTS.from}-${LOCAL_PORTS.to - 1} per client; add --clients`);
  return Array.from({ length: clients }, (_, c) => ({ ...perAddress[0]!, localAddress: `127.0.0.${c + 2}` }));
}

function planLocalPortsOnOneAddress(clients: number, devices: number, warmup: number): RunContext['portPlan'] {
  const block = Math.floor((LOCAL_PORTS.to - LOCAL_PORTS.from) / clients);
  const warmupSpan = warmup > 0 ? Math.ceil(warmup / clients) + 100 : 0;
  const devicesSpan = block - warmupSpan;
  if (devicesSpan < Math.ceil(devices / clients) + 100) return undefined;
  return Array.from({ length: clients }, (_, c) => {
    const start = LOCAL_PORTS.from + c * block;
    return { localAddress: '127.0.0.1', devices: { from: start, to: start + devicesSpan }, warmup: { from: start + devicesSpan, to: start + block } };
  });
}

async function runOne(ctx: RunContext, kind: Kind, round: number): Promise<RunResult> {
  const port = await freePort();
  const ours = kind !== 'bare';
  const db = ours ? await ctx.database.create(`${kind === 'before' ? 'b' : ''}r${round}`) : undefined;
  const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port) };
  const env: NodeJS.ProcessEnv =
    ours
      ? {
          ...baseEnv,
          NODE_ENV: 'production',
          HOST: '127.0.0.1',
          DATABASE_URL: db!.url,
          DATA_DIR: path.join(ctx.tmp, 'data'),
          DEVICE_PUBLIC_KEY_PATH: ctx.keys.publicKeyPath,
          API_USERNAME: 'bench',
          API_PASSWORD: crypto.randomBytes(18).toString('base64url'),
          INSTANCE_ID: `bench-${process.pid}-${kind === 'before' ? 'b' : ''}r${round}`,
          LOG_LEVEL: 'warn',
          // Nothing but the connects: no heartbeat pings or last_seen_at flushes during the run.
          HEARTBEAT_INTERVAL_MS: '3600000',
          WORKERS: String(ctx.workers),
        }
      : baseEnv;
  // Profiling: the inspector on loopback, the profiler running for the connect phase only.
  const server = spawnServer(kind === 'ours' ? ctx.build.serverMain : kind === 'before' ? ctx.beforeMain! : ctx.build.bareServer, ctx.profDir ? ['--inspect=127.0.0.1:0'] : [], env, ctx.tmp);
  let profiler: PhaseProfiler | undefined;
  try {
    await waitForPort(port, server, 60_000);
    // The port answers once the first worker listens: wait for all of them.
    if (ours && ctx.workers > 1) await allWorkersListening(server, db!.url, `bench-${process.pid}-${kind === 'before' ? 'b' : ''}r${round}`, ctx.workers);
    const pids = () => processTree(server.pid);
    if (ctx.profDir) profiler = await attachProfiler(await server.inspectorUrl(10_000));
    const fdsBefore = pids().reduce((n, pid) => n + openFds(pid), 0);
    const limit = maxOpenFiles(server.pid);
    // The database pool may still open up to DATABASE_POOL_SIZE (10) connections; each worker holds its share (round-robin).
    const perProcess = Math.ceil(ctx.devices / (ours ? ctx.workers : 1));
    const fdsPerProcess = Math.max(...pids().map(openFds));
    if (fdsPerProcess + 16 + perProcess > limit) {
      throw new Error(
        `${fmt(ctx.devices)} devices do not fit: a ${LABEL[kind]} process holds ${fdsPerProcess} files before any device and may hold ${limit}; ` +
          `the largest N per process here is ${fmt(limit - fdsPerProcess - 16)}`,
      );
    }

    if (ctx.warmup > 0) {
      await connectPhase(ctx, port, 'warmup');
      await Promise.all(ctx.children.map((child) => request(child, { op: 'reset' }, 'reset', 30_000)));
    }
    const rssBeforeKiB = await settledRss(pids(), ctx.settleMs);
    await profiler?.start();
    const dbCpu = db ? await databaseCpu(db.url) : undefined;
    const statements = db && ctx.dbStats ? await statementStats(db.url, log, 8) : undefined;
    const dbCpuBefore = await dbCpu?.sample();
    const clientCpu = () => ctx.children.reduce((ms, child) => ms + cpuMs(child.pid!), 0);
    const clientCpuBefore = clientCpu();
    const serverCpu = () => pids().reduce((ms, pid) => ms + cpuMs(pid), 0);
    const cpuBefore = serverCpu();
    const connected = await connectPhase(ctx, port, 'devices');
    const cpuAfter = serverCpu();
    const clientCpuMs = clientCpu() - clientCpuBefore;
    const dbCpuMs = dbCpu && dbCpuBefore ? (await dbCpu.sample()).since(dbCpuBefore) : undefined;
    await dbCpu?.close();
    await statements?.report('the connect phase', 'device', connected.ok);
    if (profiler) await fs.writeFile(path.join(ctx.profDir!, `${kind}-r${round}.cpuprofile`), await profiler.stop());
    const rssAfterKiB = await settledRss(pids(), ctx.settleMs);
    const statuses = await Promise.all(ctx.children.map((child) => request(child, { op: 'status' }, 'status', 30_000)));
    const stillOpen = statuses.reduce((n, s) => n + s.open, 0);
    const dropped = statuses.reduce((n, s) => n + s.dropped, 0);
    if (dropped > 0) connected.errors['dropped after 200'] = dropped;

    let sessionsOpen: number | undefined;
    if (db) {
      const client = new pg.Client(db.url);
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>(
          `select count(*) as n from device_sessions where disconnected_at is null and device_id like 'bench-device-%'`,
        );
        sessionsOpen = Number(rows[0]!.n);
        if (ctx.workers > 1) {
          const { rows: spread } = await client.query<{ instance_id: string; n: number }>(
            `select instance_id, count(*)::int as n from device_sessions where disconnected_at is null and device_id like 'bench-device-%' group by 1 order by 1`,
          );
          log(`  devices per worker: ${spread.map((r) => `${r.instance_id} ${fmt(r.n)}`).join(', ')}`);
        }
      } finally {
        await client.end();
      }
    }

    const ok = Math.min(connected.ok, stillOpen);
    const durationMs = connected.lastDoneMs - connected.firstStartMs;
    return {
      kind,
      round,
      ok: connected.ok,
      failed: connected.failed + dropped,
      errors: connected.errors,
      durationMs,
      ratePerSec: (connected.ok / durationMs) * 1000,
      rssBeforeKiB,
      rssAfterKiB,
      perDeviceKiB: (rssAfterKiB - rssBeforeKiB) / ok,
      cpuPerDeviceUs: ((cpuAfter - cpuBefore) * 1000) / connected.ok,
      dbCpuPerDeviceUs: dbCpuMs === undefined ? Number.NaN : (dbCpuMs * 1000) / connected.ok,
      clientCpuPerDeviceUs: (clientCpuMs * 1000) / connected.ok,
      p50Ms: percentile(connected.latencySample, 50),
      p99Ms: percentile(connected.latencySample, 99),
      fdsBefore,
      portRetries: connected.portRetries,
      sessionsOpen,
    };
  } finally {
    profiler?.close();
    await killChild(server.child, 'SIGKILL');
    await Promise.all(ctx.children.map((child) => request(child, { op: 'reset' }, 'reset', 30_000).catch(() => undefined)));
    await db?.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}

/** All clients connect their share of a device set at the same moment; merged result. */
async function connectPhase(ctx: RunContext, port: number, set: 'devices' | 'warmup'): Promise<ConnectResult> {
  const total = set === 'devices' ? ctx.devices : ctx.warmup;
  const deadlineMs = 120_000 + total * 10;
  const perClient = Math.max(1, Math.floor(ctx.concurrency / ctx.children.length));
  const results = await Promise.all(
    ctx.children.map((child, c) =>
      request(
        child,
        { op: 'connect', port, set, concurrency: perClient, perDeviceTimeoutMs: 60_000, deadlineMs, localPorts: ctx.portPlan?.[c]?.[set], localAddress: ctx.portPlan?.[c]?.localAddress },
        'connected',
        deadlineMs + 90_000,
      ),
    ),
  );
  const errors: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  return {
    ok: results.reduce((n, r) => n + r.ok, 0),
    failed: results.reduce((n, r) => n + r.failed, 0),
    portRetries: results.reduce((n, r) => n + r.portRetries, 0),
    errors,
    firstStartMs: Math.min(...results.map((r) => r.firstStartMs).filter(Number.isFinite)),
    lastDoneMs: Math.max(...results.map((r) => r.lastDoneMs).filter(Number.isFinite)),
    // Each client's sample is evenly spaced over its own sorted latencies; merged, they stay representative.
    latencySample: results.flatMap((r) => r.latencySample).sort((a, b) => a - b),
  };
}

/** VmRSS summed over `pids` after a quiet period and a full GC in each (SIGUSR2 hook: cluster workers inherit it), then a short wait for the GC's frees to show. */
async function settledRss(pids: number[], settleMs: number): Promise<number> {
  await sleep(settleMs);
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
  await sleep(500);
  return pids.reduce((kiB, pid) => kiB + rssKiB(pid), 0);
}

function printSummary(results: RunResult[], info: { devices: number; clients: number; rounds: number; description: string }): void {
  const of = (kind: Kind) => results.filter((r) => r.kind === kind);
  const ours = of('ours');
  const bare = of('bare');
  const m = (rs: RunResult[], f: (r: RunResult) => number) => median(rs.map(f));
  // Ratios are taken within a round (same machine state), then the median over rounds.
  const ratio = (f: (r: RunResult) => number) =>
    median(ours.map((o) => {
      const b = bare.find((x) => x.round === o.round);
      return b ? f(o) / f(b) : Number.NaN;
    }));
  const both = ours.length > 0 && bare.length > 0;
  const rateRatio = ratio((r) => r.ratePerSec);
  const memRatio = ratio((r) => r.perDeviceKiB);
  const verdict = (value: number, ok: boolean) => (Number.isFinite(value) ? (ok ? 'met' : 'MISSED') : 'n/a');

  const header = [`${fmt(info.devices)} devices, ${info.clients} client process(es), median of ${info.rounds}`, LABEL.ours, LABEL.bare, 'ratio', 'target'];
  const rows = [
    ['connect+auth per second', fmt(m(ours, (r) => r.ratePerSec)), fmt(m(bare, (r) => r.ratePerSec)), both ? `${fmt(rateRatio, 2)}×` : 'n/a', `≥ 0.8× (${verdict(rateRatio, rateRatio >= 0.8)})`],
    ['server RSS per device', `${fmt(m(ours, (r) => r.perDeviceKiB), 1)} KiB`, `${fmt(m(bare, (r) => r.perDeviceKiB), 1)} KiB`, both ? `${fmt(memRatio, 2)}×` : 'n/a', `≤ 1.5× (${verdict(memRatio, memRatio <= 1.5)})`],
    ['server CPU per device', `${fmt(m(ours, (r) => r.cpuPerDeviceUs))} µs`, `${fmt(m(bare, (r) => r.cpuPerDeviceUs))} µs`, both ? `${fmt(ratio((r) => r.cpuPerDeviceUs), 2)}×` : 'n/a', ''],
    ['PostgreSQL CPU per device', `${fmt(m(ours, (r) => r.dbCpuPerDeviceUs))} µs`, '–', '', ''],
    ['device clients CPU per device (same machine)', `${fmt(m(ours, (r) => r.clientCpuPerDeviceUs))} µs`, `${fmt(m(bare, (r) => r.clientCpuPerDeviceUs))} µs`, '', ''],
    ['connect+auth latency p50 / p99', `${fmt(m(ours, (r) => r.p50Ms), 1)} / ${fmt(m(ours, (r) => r.p99Ms), 1)} ms`, `${fmt(m(bare, (r) => r.p50Ms), 1)} / ${fmt(m(bare, (r) => r.p99Ms), 1)} ms`, '', ''],
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${info.description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
}

/** --before: ours against the server built from REF, each ratio taken within a round, then the median. */
function printBeforeAfter(results: RunResult[], ref: string): void {
  const ours = results.filter((r) => r.kind === 'ours');
  const before = results.filter((r) => r.kind === 'before');
  const bare = results.filter((r) => r.kind === 'bare');
  const perRound = (a: RunResult[], b: RunResult[], f: (r: RunResult) => number) =>
    a.map((x) => {
      const y = b.find((r) => r.round === x.round);
      return y ? f(x) / f(y) : Number.NaN;
    });
  const show = (xs: number[]) => `${fmt(median(xs), 2)}× (rounds ${xs.map((x) => fmt(x, 2)).join(', ')})`;
  const m = (rs: RunResult[], f: (r: RunResult) => number) => median(rs.map(f));
  const rate = (r: RunResult) => r.ratePerSec;
  const cpu = (r: RunResult) => r.cpuPerDeviceUs;
  const header = ['ours against --before ' + ref, 'ours', 'before', 'ours / before', 'before / bare'];
  const rows = [
    ['connect+auth per second', fmt(m(ours, rate)), fmt(m(before, rate)), show(perRound(ours, before, rate)), bare.length > 0 ? show(perRound(before, bare, rate)) : 'n/a'],
    ['server CPU per device', `${fmt(m(ours, cpu))} µs`, `${fmt(m(before, cpu))} µs`, show(perRound(ours, before, cpu)), bare.length > 0 ? show(perRound(before, bare, cpu)) : 'n/a'],
    ['PostgreSQL CPU per device', `${fmt(m(ours, (r) => r.dbCpuPerDeviceUs))} µs`, `${fmt(m(before, (r) => r.dbCpuPerDeviceUs))} µs`, show(perRound(ours, before, (r) => r.dbCpuPerDeviceUs)), ''],
    ['server RSS per device', `${fmt(m(ours, (r) => r.perDeviceKiB), 1)} KiB`, `${fmt(m(before, (r) => r.perDeviceKiB), 1)} KiB`, show(perRound(ours, before, (r) => r.perDeviceKiB)), ''],
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\n${markdown}\n`);
}

async function makeKeys(tmp: string): Promise<{ publicKeyPath: string; privateKeyPem: string }> {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const dir = path.join(tmp, 'keys');
  await fs.mkdir(dir);
  const publicKeyPath = path.join(dir, 'public.pem');
  await fs.writeFile(publicKeyPath, publicKey);
  return { publicKeyPath, privateKeyPem: privateKey };
}

function share<T>(items: T[], index: number, parts: number): T[] {
  const size = Math.ceil(items.length / parts);
  return items.slice(index * size, (index + 1) * size);
}
