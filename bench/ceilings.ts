/**
 * `npm run bench -- ceilings`: what one PostgreSQL sustains for the mixes that matter,
 * with 1, 2 and 4 server processes (`--processes`, our server with WORKERS=N: N instances
 * of the multi-instance design on one port and one database), and which resource runs
 * out first.
 *
 * One embedded PostgreSQL (default durability; DATABASE_URL is used if set, but then
 * pg_stat_wal and the background processes' CPU are the whole cluster's), a fresh
 * database per process count. Devices: bench/device-client.ts (one child); load:
 * bench/load-client.ts (one child); DSS events: one bench/dss-feeder.ts child per stream.
 * Per process count, the mixes in this order:
 *  - connect: every device disconnected, then connected and authenticated again; unit = a
 *    connect (session row written);
 *  - single: `--single` POST /v1/devices/:id/actuations, `--connections` in flight,
 *    devices acking; unit = an actuation delivered and its ack committed;
 *  - bulk: `--bulk-total` actuations in POST /v1/actuations of 1,000, `--bulk-in-flight`
 *    requests outstanding, devices acking; unit = as for single;
 *  - acks: `--acks` actuations delivered in bulk with the devices holding their acks, then
 *    all acks sent at once; unit = an ack committed (no `sent` row left);
 *  - dss: one DSS stream per server process (its share: one each), a rule turning every
 *    event into an actuation, `--dss` events offered faster than taken over disjoint
 *    device slices; unit = an event's actuation delivered and acked.
 * Each mix is observed the same way (see `observe`): units/s, PostgreSQL CPU (its backends
 * and background processes, /proc), the server processes' CPU, the machine's busy CPU
 * (/proc/stat), WAL (`pg_current_wal_lsn()` bytes, `pg_stat_wal` records and syncs),
 * commits (`pg_stat_database`), what the database's active backends wait on
 * (`pg_stat_activity` sampled every 50 ms) and the NOTIFY queue's peak
 * (`pg_notification_queue_usage()`).
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { FeederReply, FeederRequest } from './dss-feeder.js';
import type { LoadReply, LoadRequest, LoadRun } from './load-client.js';
import { int, log } from './lib/cli.js';
import { databaseCpu, waitUntilAllAcked } from './lib/database.js';
import { ackHeld, listen, resetDevices, waitForReceipts } from './lib/devices.js';
import { request } from './lib/ipc.js';
import type { RunningServer } from './lib/our-server.js';
import { cpuMs, forkClient, sleep } from './lib/processes.js';
import { prepareBenchRun, type BenchRun } from './lib/setup.js';
import { fmt, renderTables } from './lib/stats.js';
import { startWorkersServer, stopWorkersServer, type WorkersServer } from './lib/workers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEVICE_SCRIPT = path.join(ROOT, 'bench', 'device-client.ts');
const LOAD_SCRIPT = path.join(ROOT, 'bench', 'load-client.ts');
const FEEDER_SCRIPT = path.join(ROOT, 'bench', 'dss-feeder.ts');

const MIXES = ['connect', 'single', 'bulk', 'acks', 'dss'] as const;
type Mix = (typeof MIXES)[number];
const UNIT: Record<Mix, string> = { connect: 'connect', single: 'actuation', bulk: 'actuation', acks: 'ack', dss: 'event' };
/** Wait events of WAL flushing: a commit waiting for its fsync, or for the lock of whoever is doing it (PostgreSQL 17 spells them IO:WalSync, IO:WalWrite; earlier IO:WALSync). */
const WAL_WAITS = new Set(['io:walsync', 'io:walwrite', 'lwlock:walwrite']);

const usage = `usage: npm run bench -- ceilings [options]
  --processes LIST     server process counts (WORKERS=N on one database), comma-separated (default 1,2,4)
  --mixes LIST         ${MIXES.join(', ')} (default all)
  --devices N          simulated devices (default 2000)
  --connections C      keep-alive HTTP connections, all in flight in the single run (default 64)
  --single N           actuations of the single-POST run (default 10000)
  --bulk-total N       actuations of the bulk run (default 60000)
  --bulk-in-flight F   outstanding bulk requests (default 8)
  --acks N             actuations delivered then acked at once (default 30000)
  --dss N              DSS events over all streams (default 15000)`;

interface Observation {
  mix: Mix;
  processes: number;
  units: number;
  perSec: number;
  seconds: number;
  /** PostgreSQL CPU per unit, µs, and cores it kept busy on average. */
  dbUs: number;
  dbCores: number;
  serverCores: number;
  /** The bench's own clients (devices, load generator, DSS feeders), cores. */
  clientCores: number;
  /** Share of the machine's CPU time busy (all cores), and cores busy with anything but the above (other work on the machine). */
  machineBusy: number;
  otherCores: number;
  walRecords: number;
  walBytes: number;
  /** WAL fsyncs per 1,000 units, and commits per 1,000 units. */
  walSyncsPerK: number;
  commitsPerK: number;
  /** Mean active (or idle-in-transaction) backends of the database, and the share of them in each wait. */
  activeBackends: number;
  waits: { event: string; share: number }[];
  notifyPeak: number;
  lost: number;
}

export async function ceilingsBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      processes: { type: 'string', default: '1,2,4' },
      mixes: { type: 'string', default: MIXES.join(',') },
      devices: { type: 'string', default: '2000' },
      connections: { type: 'string', default: '64' },
      single: { type: 'string', default: '10000' },
      'bulk-total': { type: 'string', default: '60000' },
      'bulk-in-flight': { type: 'string', default: '8' },
      acks: { type: 'string', default: '30000' },
      dss: { type: 'string', default: '15000' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return 0;
  }
  const processes = values.processes.split(',').map((p) => int('processes', p, 1, 8));
  const mixes = values.mixes.split(',') as Mix[];
  if (mixes.some((m) => !MIXES.includes(m))) throw new Error(`--mixes takes ${MIXES.join(', ')}`);
  const devices = int('devices', values.devices, 10, 19_000);
  const opts: Options = {
    mixes,
    connections: int('connections', values.connections, 1, 256),
    single: int('single', values.single, 100, 1_000_000),
    bulkTotal: int('bulk-total', values['bulk-total'], 1_000, 2_000_000),
    bulkInFlight: int('bulk-in-flight', values['bulk-in-flight'], 1, 64),
    acks: int('acks', values.acks, 100, 1_000_000),
    dss: int('dss', values.dss, 100, 1_000_000),
  };
  log(`ceilings bench: ${fmt(devices)} devices, server processes ${processes.join(', ')} (WORKERS=N, one database), mixes ${mixes.join(', ')}`);
  const run = await prepareBenchRun({ root: ROOT, deviceScript: DEVICE_SCRIPT, devices, fsync: true, cpuProf: false, log });
  const ctx: Context = { run, opts, loadClient: forkClient(LOAD_SCRIPT), feeders: [] };
  const results: Observation[] = [];
  for (const p of processes) {
    for (const o of await runProcesses(ctx, p)) {
      results.push(o);
      log(`  ${o.mix} with ${p}: ${line(o)}`);
    }
  }
  printSummary(results, run.database.description, devices);
  const lost = results.filter((o) => o.lost > 0);
  if (lost.length > 0) {
    log(`\nINVALID: ${lost.length} run(s) lost units; see above.`);
    return 1;
  }
  return 0;
}

interface Options {
  mixes: Mix[];
  connections: number;
  single: number;
  bulkTotal: number;
  bulkInFlight: number;
  acks: number;
  dss: number;
}
interface Context {
  run: BenchRun;
  opts: Options;
  loadClient: ChildProcess;
  /** One per stream, forked when first needed, reused across process counts. */
  feeders: ChildProcess[];
}

async function runProcesses(ctx: Context, processes: number): Promise<Observation[]> {
  const { run, opts } = ctx;
  const db = await run.database.create(`c${processes}`);
  const instanceId = `bench-${process.pid}-c${processes}`;
  let started: WorkersServer | undefined;
  const out: Observation[] = [];
  try {
    started = await startWorkersServer({ script: run.build.serverMain, databaseUrl: db.url, keys: run.keys, tmp: run.tmp, instanceId, workers: processes });
    const { running: server, tree } = started;
    const s = server;
    const clients = () => [run.deviceClient, ctx.loadClient, ...ctx.feeders].map((c) => c.pid!);
    const observeMix = (mix: Mix, body: () => Promise<{ units: number; expected: number; startMs: number; endMs: number }>) =>
      observe(db.url, tree, clients, mix, processes, body);
    const load = (r: Omit<LoadRun, 'origin' | 'authorization' | 'deviceIds' | 'connections'>) =>
      request<'ran', LoadReply, LoadRequest>(
        ctx.loadClient,
        { op: 'run', origin: s.origin, authorization: s.authorization, deviceIds: run.deviceIds, connections: opts.connections, ...r },
        'ran',
        r.deadlineMs + 60_000,
      );
    const connect = () =>
      request(run.deviceClient, { op: 'connect', port: s.port, set: 'devices', concurrency: 64, perDeviceTimeoutMs: 30_000, deadlineMs: 90_000 }, 'connected', 150_000);

    // Warm-up (JIT, pools, every worker), not measured.
    await connect();
    await sleep(1_500);
    await listen([run.deviceClient], true, false);
    const warm = await load({ total: 2_000 * processes, mode: { kind: 'closed', inFlight: opts.connections }, deadlineMs: 60_000 });
    await waitForReceipts([run.deviceClient], warm.accepted);
    await waitUntilAllAcked(db.url, 30_000);

    if (opts.mixes.includes('connect')) {
      await resetDevices([run.deviceClient]);
      await sleep(1_500); // the sessions' closes committed before the connects start
      out.push(
        await observeMix('connect', async () => {
          const c = await connect();
          return { units: c.ok, expected: run.deviceIds.length, startMs: c.firstStartMs, endMs: c.lastDoneMs };
        }),
      );
      await sleep(1_500);
    }
    // An actuation's unit of work ends with its ack committed: the observation lasts until none is `sent`.
    const delivered = async (r: Omit<LoadRun, 'origin' | 'authorization' | 'deviceIds' | 'connections'>) => {
      await listen([run.deviceClient], true, false);
      const sent = await load(r);
      const got = await waitForReceipts([run.deviceClient], sent.accepted);
      await waitUntilAllAcked(db.url, 60_000);
      const endMs = performance.timeOrigin + performance.now();
      if (got.count < sent.accepted) {
        // Short: stuck, or only late? Wait past the safety-net poll (DISPATCH_POLL_MS) and say which.
        const queued = await countStatus(db.url, 'queued');
        const later = await waitForReceipts([run.deviceClient], sent.accepted, { quietMs: 15_000, timeoutMs: 60_000 });
        log(`  ${fmt(sent.accepted - got.count)} not received within 5 s of the last receipt (${fmt(queued)} still queued); ${fmt(later.count - got.count)} more arrived in the next ${fmt((later.lastMs - got.lastMs) / 1000, 1)} s`);
        log(`  still queued, by the instance holding the device: ${await queuedByHolder(db.url)}`);
        log(`  the server's last output:\n${s.server.output.text().slice(-3_000)}`);
      }
      return { units: got.count, expected: sent.accepted + sent.rejected, startMs: sent.firstSendMs, endMs };
    };
    if (opts.mixes.includes('single')) {
      out.push(await observeMix('single', () => delivered({ total: opts.single, mode: { kind: 'closed', inFlight: opts.connections }, deadlineMs: 180_000 })));
      await sleep(1_500);
    }
    if (opts.mixes.includes('bulk')) {
      out.push(await observeMix('bulk', () => delivered({ total: opts.bulkTotal, bulk: 1_000, mode: { kind: 'closed', inFlight: opts.bulkInFlight }, deadlineMs: 180_000 })));
      await sleep(1_500);
    }
    if (opts.mixes.includes('acks')) {
      await listen([run.deviceClient], false, false, true);
      const sent = await load({ total: opts.acks, bulk: 1_000, mode: { kind: 'closed', inFlight: opts.bulkInFlight }, deadlineMs: 180_000 });
      const got = await waitForReceipts([run.deviceClient], sent.accepted);
      await sleep(1_500);
      out.push(
        await observeMix('acks', async () => {
          const startMs = performance.timeOrigin + performance.now();
          const acks = await ackHeld([run.deviceClient]);
          await waitUntilAllAcked(db.url, 120_000);
          const endMs = performance.timeOrigin + performance.now();
          const left = await countStatus(db.url, 'sent');
          return { units: acks - left, expected: got.count, startMs, endMs };
        }),
      );
    }
    if (opts.mixes.includes('dss')) out.push(await dssMix(ctx, s, db.url, processes, observeMix));
    return out;
  } finally {
    await resetDevices([run.deviceClient]);
    if (started) await stopWorkersServer(started);
    await db.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}

/** One stream per server process (each instance takes its share: one), one rule, disjoint device slices per stream. */
async function dssMix(
  ctx: Context,
  server: RunningServer,
  url: string,
  processes: number,
  observeMix: (mix: Mix, body: () => Promise<{ units: number; expected: number; startMs: number; endMs: number }>) => Promise<Observation>,
): Promise<Observation> {
  const { run, opts } = ctx;
  while (ctx.feeders.length < processes) ctx.feeders.push(forkClient(FEEDER_SCRIPT));
  const feeders = ctx.feeders.slice(0, processes);
  const call = <Op extends FeederReply['op']>(feeder: ChildProcess, message: FeederRequest, expected: Op, timeoutMs: number) =>
    request<Op, FeederReply, FeederRequest>(feeder, message, expected, timeoutMs);
  const rule = await server.api('POST', '/v1/rules', {
    name: 'bench',
    match: { eventType: 'datapoint', propertyName: 'bench' },
    action: { deviceId: '{{dsn}}', componentId: 'bench', command: 'set', params: [{ name: 't', value: '{{value}}' }] },
  });
  if (rule.status !== 201) throw new Error(`POST /v1/rules: ${rule.status} ${JSON.stringify(rule.json)}`);
  const keys = feeders.map((_, i) => `ceil-p${processes}-s${i}`);
  const ids: string[] = [];
  for (const [i, feeder] of feeders.entries()) {
    const { streamUrl } = await call(feeder, { op: 'start', streamKey: keys[i]! }, 'started', 30_000);
    const stream = await server.api('POST', '/v1/dss/streams', { name: keys[i], url: streamUrl, streamKey: keys[i] });
    if (stream.status !== 201) throw new Error(`POST /v1/dss/streams: ${stream.status} ${JSON.stringify(stream.json)}`);
    ids.push((stream.json as { id: string }).id);
  }
  const deadline = Date.now() + 60_000;
  for (const id of ids) {
    for (;;) {
      const st = await server.api('GET', `/v1/dss/streams/${id}`);
      if ((st.json as { status?: { connected?: boolean } }).status?.connected) break;
      if (Date.now() > deadline) throw new Error(`stream not connected within 60 s: ${JSON.stringify(st.json)}`);
      await sleep(200);
    }
  }
  const holders = await distinctHolders(url);
  if (holders < processes) log(`  dss: ${processes} streams held by ${holders} instance(s)`);
  const slice = Math.floor(run.deviceIds.length / processes);
  const emit = (total: number) =>
    Promise.all(
      feeders.map((feeder, i) =>
        call(
          feeder,
          { op: 'emit', streamKey: keys[i]!, dsns: run.deviceIds.slice(i * slice, (i + 1) * slice), total, mode: { kind: 'burst', chunk: 500, everyMs: 10 }, deadlineMs: 120_000 },
          'emitted',
          150_000,
        ),
      ),
    );
  await listen([run.deviceClient], true, false);
  const warm = await emit(500); // warm-up: rules compiled, pipelines running
  await waitForReceipts([run.deviceClient], warm.reduce((n, e) => n + e.sent, 0));
  await sleep(1_500);
  return observeMix('dss', async () => {
    await listen([run.deviceClient], true, false);
    const sent = await emit(Math.ceil(opts.dss / processes));
    const total = sent.reduce((n, e) => n + e.sent, 0);
    const got = await waitForReceipts([run.deviceClient], total, { quietMs: 10_000, timeoutMs: 300_000 });
    await waitUntilAllAcked(url, 60_000);
    return { units: got.count, expected: total, startMs: Math.min(...sent.map((e) => e.firstMs)), endMs: performance.timeOrigin + performance.now() };
  });
}

/**
 * Runs `body` and observes the database and the machine meanwhile. `body` says how many
 * units it completed between `startMs` and `endMs` (performance.timeOrigin-based ms).
 */
async function observe(
  url: string,
  serverPids: number[],
  clientPids: () => number[],
  mix: Mix,
  processes: number,
  body: () => Promise<{ units: number; expected: number; startMs: number; endMs: number }>,
): Promise<Observation> {
  const client = new pg.Client(url);
  await client.connect();
  const dbCpu = await databaseCpu(url);
  try {
    const counters = async () =>
      (
        await client.query<{ lsn: string; records: string; syncs: string; commits: string }>(
          `select pg_current_wal_lsn()::text as lsn, w.wal_records::text as records, w.wal_sync::text as syncs, d.xact_commit::text as commits
             from pg_stat_wal w, pg_stat_database d where d.datname = current_database()`,
        )
      ).rows[0]!;
    const before = await counters();
    const cpuBefore = await dbCpu.sample();
    const serverBefore = serverCpuMs(serverPids);
    const clientsBefore = serverCpuMs(clientPids());
    const machineBefore = machineCpu();
    const sampler = sampleWaits(url);
    const wallStart = Date.now();
    const r = await body();
    const wallMs = Date.now() - wallStart;
    const waits = await sampler.stop();
    const dbMs = (await dbCpu.sample()).since(cpuBefore);
    const serverMs = serverCpuMs(serverPids) - serverBefore;
    const clientMs = serverCpuMs(clientPids()) - clientsBefore;
    const machine = machineCpu();
    const machineBusy = (machine.busy - machineBefore.busy) / Math.max(1, machine.total - machineBefore.total);
    // Backends report their WAL and commit counters at most once a second: let them.
    await sleep(1_500);
    await client.query('select pg_stat_clear_snapshot()');
    const after = await counters();
    const walBytes = Number((await client.query<{ b: string }>('select pg_wal_lsn_diff($1, $2)::text as b', [after.lsn, before.lsn])).rows[0]!.b);
    const seconds = (r.endMs - r.startMs) / 1000;
    const units = Math.max(1, r.units);
    return {
      mix,
      processes,
      units: r.units,
      perSec: r.units / seconds,
      seconds,
      dbUs: (dbMs * 1000) / units,
      dbCores: dbMs / wallMs,
      serverCores: serverMs / wallMs,
      clientCores: clientMs / wallMs,
      machineBusy,
      otherCores: Math.max(0, machineBusy * os.cpus().length - (dbMs + serverMs + clientMs) / wallMs),
      walRecords: (Number(after.records) - Number(before.records)) / units,
      walBytes: walBytes / units,
      walSyncsPerK: ((Number(after.syncs) - Number(before.syncs)) * 1000) / units,
      commitsPerK: ((Number(after.commits) - Number(before.commits)) * 1000) / units,
      activeBackends: waits.meanActive,
      waits: waits.shares,
      notifyPeak: waits.notifyPeak,
      lost: Math.max(0, r.expected - r.units),
    };
  } finally {
    await dbCpu.close();
    await client.end();
  }
}

/** Every 50 ms: what the database's busy backends wait on (none: on the CPU), and the NOTIFY queue's usage. */
function sampleWaits(url: string): { stop(): Promise<{ meanActive: number; shares: { event: string; share: number }[]; notifyPeak: number }> } {
  const client = new pg.Client(url);
  const counts = new Map<string, number>();
  let samples = 0;
  let backends = 0;
  let notifyPeak = 0;
  let running = true;
  const loop = (async () => {
    await client.connect();
    while (running) {
      const { rows } = await client.query<{ event: string; n: number; notify: number }>(
        `select case when state = 'idle in transaction' then 'Client:idle in transaction'
                     when wait_event_type is null then 'CPU' else wait_event_type || ':' || wait_event end as event,
                count(*)::int as n, pg_notification_queue_usage() as notify
           from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and state in ('active', 'idle in transaction')
          group by 1`,
      );
      samples++;
      for (const r of rows) {
        counts.set(r.event, (counts.get(r.event) ?? 0) + r.n);
        backends += r.n;
        notifyPeak = Math.max(notifyPeak, r.notify);
      }
      await sleep(50);
    }
    await client.end();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const shares = [...counts]
        .map(([event, n]) => ({ event, share: n / Math.max(1, backends) }))
        .sort((a, b) => b.share - a.share);
      return { meanActive: backends / Math.max(1, samples), shares, notifyPeak };
    },
  };
}

function serverCpuMs(pids: number[]): number {
  return pids.reduce((ms, pid) => {
    try {
      return ms + cpuMs(pid);
    } catch {
      return ms;
    }
  }, 0);
}

/** The machine's CPU time, all cores, in clock ticks: busy (not idle, not iowait) and total. */
function machineCpu(): { busy: number; total: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - fields[3]! - fields[4]!, total };
}

async function countStatus(url: string, status: 'queued' | 'sent'): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<{ n: number }>(`select count(*)::int as n from actuations where status = $1`, [status])).rows[0]!.n;
  } finally {
    await client.end();
  }
}

/** Queued actuations and their devices, by the instance holding each device's open session. */
async function queuedByHolder(url: string): Promise<string> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ instance: string | null; devices: number; queued: number; sent_by: string | null }>(
      `select s.instance_id as instance, count(distinct a.device_id)::int as devices, count(*)::int as queued,
              string_agg(distinct coalesce(a.history -> 0 ->> 'status', '?'), ',') as sent_by
         from actuations a left join device_sessions s on s.device_id = a.device_id and s.disconnected_at is null
        where a.status = 'queued' group by 1 order by 1`,
    );
    return rows.map((r) => `${r.instance ?? 'no open session'}: ${fmt(r.queued)} on ${fmt(r.devices)} devices`).join('; ') || 'none';
  } finally {
    await client.end();
  }
}

async function distinctHolders(url: string): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<{ n: number }>('select count(distinct holder_instance_id)::int as n from dss_streams')).rows[0]!.n;
  } finally {
    await client.end();
  }
}

/**
 * What ran out first, from the figures: a heuristic, printed beside them so it can be checked.
 * In PostgreSQL's own terms: WAL flushing (commits waiting for an fsync or for the backend
 * doing it), row locks (`Lock:transactionid`/`tuple`: a device's counter row, a claimed
 * row), the NOTIFY commit lock (`Lock:object`: a committing transaction that notified holds
 * one lock for the whole cluster while it queues its notifications, held across its WAL
 * flush) or the NOTIFY queue filling; else the CPU: the machine's when it is full (backends
 * idle in transaction then wait for a server process off the CPU), PostgreSQL's otherwise.
 */
function firstOut(o: Observation): string {
  const share = (pred: (event: string) => boolean) => o.waits.filter((w) => pred(w.event)).reduce((n, w) => n + w.share, 0);
  const wal = share((e) => WAL_WAITS.has(e.toLowerCase()));
  const rows = share((e) => e === 'Lock:transactionid' || e === 'Lock:tuple');
  const notify = share((e) => e === 'Lock:object');
  const pct = (v: number) => `${fmt(v * 100)}% of busy backends`;
  const idle = share((e) => e === 'Client:idle in transaction');
  if (o.notifyPeak >= 0.5) return `NOTIFY queue (${fmt(o.notifyPeak * 100)}% full)`;
  if (wal >= 0.3) return `WAL flush (${pct(wal)})`;
  if (notify >= 0.2) return `NOTIFY commit lock (${pct(notify)})`;
  if (rows >= 0.2) return `row locks (${pct(rows)})`;
  // Backends idle in a transaction wait for a server process that is not on a core.
  if (o.machineBusy >= 0.9) return `machine CPU (${fmt(o.machineBusy * 100)}% busy; PostgreSQL ${fmt(o.dbCores, 2)} cores${idle >= 0.2 ? `; ${pct(idle)} idle in transaction` : ''})`;
  return `PostgreSQL CPU (${fmt(o.dbCores, 2)} cores; machine ${fmt(o.machineBusy * 100)}% busy)`;
}

function waitsText(o: Observation): string {
  return o.waits
    .slice(0, 4)
    .map((w) => `${w.event} ${fmt(w.share * 100)}%`)
    .join(', ');
}

function line(o: Observation): string {
  return (
    `${fmt(o.perSec)} ${UNIT[o.mix]}s/s (${fmt(o.units)} in ${fmt(o.seconds, 1)} s${o.lost > 0 ? `, ${fmt(o.lost)} LOST` : ''}); PostgreSQL ${fmt(o.dbUs)} µs/${UNIT[o.mix]}, ` +
    `${fmt(o.dbCores, 2)} cores; servers ${fmt(o.serverCores, 2)} cores; bench clients ${fmt(o.clientCores, 2)}; other work ${fmt(o.otherCores, 2)}; machine ${fmt(o.machineBusy * 100)}% busy; WAL ${fmt(o.walRecords, 1)} records, ` +
    `${fmt(o.walBytes)} B, ${fmt(o.walSyncsPerK, 1)} fsyncs and ${fmt(o.commitsPerK, 1)} commits per 1,000; ${fmt(o.activeBackends, 1)} busy backends: ${waitsText(o)}; ` +
    `NOTIFY queue peak ${fmt(o.notifyPeak * 100, 2)}%; first out: ${firstOut(o)}`
  );
}

function printSummary(results: Observation[], description: string, devices: number): void {
  const header = [
    `mix (${fmt(devices)} devices)`,
    'processes',
    'per second',
    'PostgreSQL µs / unit (cores)',
    'cores: servers / bench clients / other',
    'machine busy',
    'WAL records / bytes per unit',
    'fsyncs / commits per 1,000',
    'busy backends: top waits',
    'NOTIFY peak',
    'first to run out',
  ];
  const rows = results.map((o) => [
    `${o.mix} (${UNIT[o.mix]})`,
    String(o.processes),
    fmt(o.perSec),
    `${fmt(o.dbUs)} (${fmt(o.dbCores, 2)})`,
    `${fmt(o.serverCores, 2)} / ${fmt(o.clientCores, 2)} / ${fmt(o.otherCores, 2)}`,
    `${fmt(o.machineBusy * 100)}%`,
    `${fmt(o.walRecords, 1)} / ${fmt(o.walBytes)}`,
    `${fmt(o.walSyncsPerK, 1)} / ${fmt(o.commitsPerK, 1)}`,
    `${fmt(o.activeBackends, 1)}: ${waitsText(o)}`,
    `${fmt(o.notifyPeak * 100, 2)}%`,
    firstOut(o),
  ]);
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
}
