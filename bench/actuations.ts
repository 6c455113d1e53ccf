/**
 * `npm run bench -- actuations`: REST POST -> device, against the real server (built
 * from src/, its own process, a fresh PostgreSQL database with default durability)
 * and, in the same run and rotating which goes first, against two bare baselines that
 * push each POSTed actuation straight to a `ws` socket (no database, no auth):
 * bench/bare-node-server.ts on bare `node:http` (the harder one) and
 * bench/bare-actuation-server.ts with express; the same load generator and devices.
 *
 * Devices: bench/device-client.ts (one child, raw sockets, real RS256 tokens),
 * connected and authenticated, acking every actuation unless `--ack off`.
 * Load: bench/load-client.ts (one child, an undici Pool of `--connections`
 * keep-alive connections). Per server and round:
 *  - single: `--single` POST /v1/devices/:id/actuations, closed loop with
 *    `--in-flight` outstanding requests; actuations/s = received by the devices /
 *    (last receipt - first send);
 *  - latency: `--rate`/s for `--seconds`, open loop on a fixed schedule, POST ->
 *    device receipt measured from the scheduled send time; p50/p99/p99.9/max;
 *  - bulk: `--bulk-total` actuations as POST /v1/actuations of `--bulk-size` items,
 *    `--bulk-in-flight` requests outstanding; actuations/s as above;
 *  - after a burst: devices stop acking, `--burst` actuations go out in bulk (for ours
 *    that leaves as many unacked `sent` rows), then latency at `--rate`/s as above, still
 *    not acking (the issue's tail condition);
 *  - across instances (ours only): a second server process on the same database
 *    holds the devices, POSTs go to the first; latency at `--rate`/s as above.
 * Ratios ours/bare are taken within a round, then the median over rounds.
 *
 * `--workers N`: across workers instead (ours only, no bare servers). Per round, our server
 * with WORKERS=1 and with WORKERS=N (rotating which goes first), each on a fresh database:
 * the devices connect through the one port (the primary hands connections to the workers
 * round-robin, so do the load generator's keep-alive connections), then `--rate`/s for
 * `--seconds`, open loop. Each received actuation is classed by how it reached its device:
 * sent directly by the worker that took the POST (`sent_at = created_at`: recorded sent in
 * the submitting transaction, so that worker holds the device) or claimed by another
 * worker after the NOTIFY (the POST and the device on different workers, or, rarely, the
 * device had something queued). p50/p99/p99.9 of each class and of all.
 *
 * `--sse`: the change feed's cost instead of the bare comparison. Three variants of our
 * server per round, same runs: `nofeed` (on its database `actuation_event()` returning
 * nothing: no actuation events, nothing to sequence in the measured runs; the devices'
 * `device.connected` events, written by the session statements since migration 0023, come
 * before them), `ours` (the feed recording, no subscriber) and
 * `sse` (the feed with one subscriber taking every event, bench/sse-client.ts in its own
 * process; in the fixed-rate run, committed → received from the event rows' commit
 * timestamps, and transaction start → received; sequencing passes and feed reads per second). With
 * `--webhook`, the `sse` variant also has one webhook endpoint (bench/lib/webhook-receiver.ts)
 * for every event type: before the fixed-rate run the bench waits for it to catch up, and
 * after it for it to have every event of that run, so its latency includes its own queue
 * (one endpoint is sent one event at a time); what it has not received by the end of the
 * round is reported, not waited for.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LoadReply, LoadRequest, LoadResult, LoadRun } from './load-client.js';
import { buildRefForBench, type BenchBuild } from './lib/build.js';
import { summariseCpuProfiles } from './lib/cpu-profile.js';
import { databaseCpu, functionCalls, statementStats, waitUntilAllAcked, type BenchDatabaseServer, type ClusterActivity } from './lib/database.js';
import { connectDevices, listen, resetDevices, waitForReceipts } from './lib/devices.js';
import { request } from './lib/ipc.js';
import { startServer, type BenchKeys, type RunningServer } from './lib/our-server.js';
import { PROBE_HOOK_IMPORT, readProbe, STALL_MS, type ProbeWindow } from './lib/stall-probe.js';
import { cpuMs, forkClient, killChild, sleep } from './lib/processes.js';
import { fmt, median, percentile, renderTables } from './lib/stats.js';
import { int, log, onOff } from './lib/cli.js';
import { prepareBenchRun } from './lib/setup.js';
import { startWorkersServer, stopWorkersServer, type WorkersServer } from './lib/workers.js';
import type { SseArrival } from './sse-client.js';
import { commitLatencies, startBenchSseSubscriber, tracksCommitTimestamps, type BenchSseSubscriber } from './lib/sse-subscriber.js';
import { startBenchWebhookReceiver, type BenchWebhookReceiver } from './lib/webhook-receiver.js';
import pg from 'pg';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEVICE_SCRIPT = path.join(ROOT, 'bench', 'device-client.ts');
const LOAD_SCRIPT = path.join(ROOT, 'bench', 'load-client.ts');

type Kind = 'ours' | 'before' | 'node' | 'bare' | 'nofeed' | 'sse' | 'ssebefore';
const KINDS: Kind[] = ['node', 'bare', 'ours'];
/** Our server in some form: its own database, the cross-instance run. */
const isOurs = (kind: Kind) => kind === 'ours' || kind === 'before' || kind === 'nofeed' || isSse(kind);
/** The subscriber's variant (with `--webhook`, its endpoint too), of this tree or of `--before`. */
const isSse = (kind: Kind) => kind === 'sse' || kind === 'ssebefore';
const isBefore = (kind: Kind) => kind === 'before' || kind === 'ssebefore';
const LABEL: Record<Kind, string> = {
  ours: 'iot-websocket-server',
  before: 'ours at --before',
  node: 'bare node:http + `ws`',
  bare: 'bare express + `ws`',
  nofeed: 'feed off (no events written)',
  sse: 'feed + 1 SSE subscriber',
  ssebefore: 'the same at --before',
};
/**
 * The sequencer's pass as the server calls it (with its read of the events it numbered,
 * since migration 0022) and the readers' window (`--sse`: calls counted in the fixed-rate
 * run). Before migration 0027 the pass's read was an `events_after` call, counted as a read too.
 */
const FEED_FUNCTIONS = ['sequence_and_read_events', 'events_after'];
/**
 * And its actuation events (written by the lifecycle statements since migration 0020, each
 * inserting what `actuation_event()` returns): for `nofeed`, none. The statements' inserts
 * stay in their plans and insert nothing (their fixed cost stays in the baseline).
 */
const NO_ACTUATION_EVENTS = `create or replace function actuation_event(a actuations, p_status text, p_previous text)
returns table (type text, device_id text, account_id text, actuation_id uuid, seq bigint, actuation_account_id text,
               previous_status text, attempts integer, status_code integer, reason_phrase text, source jsonb,
               session_id bigint, instance_id text, superseded_by uuid)
language sql stable rows 1 as $$ select null::text, null::text, null::text, null::uuid, null::bigint, null::text, null::text,
  null::integer, null::integer, null::text, null::jsonb, null::bigint, null::text, null::uuid where false $$`;

interface Throughput {
  accepted: number;
  received: number;
  perSec: number;
  /** Server CPU (all threads) per actuation received, µs; with two instances, both. */
  serverCpuUs: number;
  /** PostgreSQL CPU (the database's backends and the cluster's background processes) per actuation, µs. */
  dbCpuUs: number;
  rejected: number;
  errors: Record<string, number>;
}
interface Latency {
  sent: number;
  received: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  answerP99: number;
  rejected: number;
  /** With --probe: the server's event-loop stalls and GC pauses during the window. */
  probe?: ProbeWindow;
  /** When the slow ones (> 10 ms) were sent: 250 ms buckets (s from the start) holding 3 or more. */
  slowAt: { atS: number; count: number }[];
  slow: number;
}
interface RunResult {
  kind: Kind;
  round: number;
  single: Throughput;
  latency: Latency;
  bulk: Throughput;
  afterBurst?: Latency;
  cross?: Latency;
  /**
   * `sse` only, at `--rate`/s: committed → subscriber (the event row's commit timestamp;
   * NaN when the database does not record them) and transaction start → subscriber (`at`, an
   * upper bound), and events the subscriber got vs expected.
   */
  feed?: {
    committed: { p50: number; p99: number; max: number };
    txStart: { p50: number; p99: number; max: number };
    received: number;
    expected: number;
    reconnects: number;
  };
  /** Feed variants, the fixed-rate run: sequencing passes per second and PostgreSQL time per pass; feed reads per second. */
  passes?: { perSec: number; msPerPass: number; readsPerSec: number; msPerRead: number };
  /** What the PostgreSQL cluster did during the run (after the CHECKPOINT it starts with). */
  cluster: ClusterActivity;
  /** `sse` with `--webhook`: transaction start → webhook receiver at `--rate`/s, and events it got by the end vs recorded. */
  webhook?: { committed: { p50: number; p99: number; max: number }; txStart: { p50: number; p99: number }; received: number; expected: number; caughtUp: boolean };
}

const usage = `usage: npm run bench -- actuations [options]
  --devices N          simulated devices, connected and authenticated (default 1000)
  --rounds R           rounds, each runs both servers, alternating which goes first (default 2)
  --ack on|off         devices ack every actuation (default on)
  --connections C      keep-alive HTTP connections of the load generator (default 32)
  --in-flight F        outstanding single POSTs in the throughput run (default = connections)
  --single N           actuations in the single-POST throughput run (default 20000)
  --rate R             actuations/s of the latency runs (default 500)
  --seconds S          length of each latency run (default 10)
  --bulk-total N       actuations in the bulk run (default 100000)
  --bulk-size K        items per bulk request (default 1000, the API's maximum)
  --bulk-in-flight F   outstanding bulk requests (default 4)
  --burst N            actuations of the burst before the non-acking latency run (default 15000; 0 skips the run)
  --fsync on|off       embedded PostgreSQL durability (default on; ignored with DATABASE_URL)
  --only LIST          servers to run, comma-separated: ours, node (bare node:http), bare (bare express)
  --sse                the change feed's cost: feed triggers disabled vs feed without subscriber vs
                       feed with one SSE subscriber taking every event (no bare servers, no cross run)
  --webhook            with --sse: the subscriber's variant also has one webhook endpoint for every event type
  --no-cross           skip the across-instances run
  --no-warmup          skip the warm-up run before round 1 (one run of our server, not counted, so that
                       the first counted run does not meet a cold PostgreSQL cluster and cold clients)
  --workers N          across workers instead: WORKERS=1 beside WORKERS=N, fixed-rate latency only, split
                       by direct send (POST and device on one worker) and claim (on different workers)
  --db-stats           embedded PostgreSQL only: print our server's statements of the single and bulk runs
                       by total time (pg_stat_statements)
  --cpu-prof           V8 CPU profile of our server(s) for the whole round (figures not comparable)
  --before REF         also run our server as built from git REF (e.g. HEAD~1, main), same run, as \`before\`
  --probe              event-loop stalls (a timer ≥ ${STALL_MS} ms late) and GC pauses of every server during
                       the latency runs (bench/lib/stall-probe.ts)`;

export async function actuationsBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '2' },
      ack: { type: 'string', default: 'on' },
      connections: { type: 'string', default: '32' },
      'in-flight': { type: 'string' },
      single: { type: 'string', default: '20000' },
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '10' },
      'bulk-total': { type: 'string', default: '100000' },
      'bulk-size': { type: 'string', default: '1000' },
      'bulk-in-flight': { type: 'string', default: '4' },
      burst: { type: 'string', default: '15000' },
      probe: { type: 'boolean', default: false },
      before: { type: 'string' },
      fsync: { type: 'string', default: 'on' },
      only: { type: 'string' },
      'no-cross': { type: 'boolean', default: false },
      'no-warmup': { type: 'boolean', default: false },
      workers: { type: 'string' },
      sse: { type: 'boolean', default: false },
      webhook: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'db-stats': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return 0;
  }
  const devices = int('devices', values.devices, 1, 9_000);
  const connections = int('connections', values.connections, 1, 256);
  const opts: Options = {
    rounds: int('rounds', values.rounds, 1, 9),
    ack: onOff('ack', values.ack),
    connections,
    inFlight: values['in-flight'] ? int('in-flight', values['in-flight'], 1, 4_096) : connections,
    single: int('single', values.single, 100, 1_000_000),
    rate: int('rate', values.rate, 1, 50_000),
    seconds: int('seconds', values.seconds, 1, 120),
    bulkTotal: int('bulk-total', values['bulk-total'], 1, 2_000_000),
    bulkSize: int('bulk-size', values['bulk-size'], 1, 1_000),
    bulkInFlight: int('bulk-in-flight', values['bulk-in-flight'], 1, 64),
    burst: int('burst', values.burst, 0, 1_000_000),
    probe: values.probe,
    cross: !values['no-cross'] && !values.sse,
    warmup: !values['no-warmup'],
    dbStats: values['db-stats'],
    webhook: values.webhook,
    sse: values.sse,
  };
  if (opts.webhook && !values.sse) throw new Error('--webhook goes with --sse');
  if (opts.webhook) LABEL.sse = 'feed + 1 SSE subscriber + 1 webhook';
  if (values.sse && values.before) LABEL.ssebefore = `${LABEL.sse} at ${values.before}`;
  const fsync = onOff('fsync', values.fsync);
  const only = values.only?.split(',') ?? KINDS;
  if (only.length === 0 || only.some((k) => !(KINDS as string[]).includes(k))) throw new Error('--only takes ours, node, bare (comma-separated)');
  // --sse --before: the subscriber's variant at REF beside this tree's, both against feed off, in
  // place of the feed without a subscriber (which neither the subscriber nor the webhook code touches).
  const kinds: Kind[] = values.sse ? (values.before ? ['nofeed', 'sse', 'ssebefore'] : ['nofeed', 'ours', 'sse']) : [...KINDS.filter((k) => only.includes(k)), ...(values.before ? (['before'] as const) : [])];
  if (values.before) LABEL.before = `ours at ${values.before}`;

  log(
    `actuations bench: ${fmt(devices)} devices (${opts.ack ? 'acking every actuation' : 'not acking'}), load generator: undici Pool of ${connections} keep-alive ` +
      `connections in its own process; ${opts.rounds} round(s)`,
  );
  const { tmp, profDir, database, build, keys, deviceClient, deviceIds } = await prepareBenchRun({
    root: ROOT,
    deviceScript: DEVICE_SCRIPT,
    devices,
    fsync,
    statementStats: opts.dbStats,
    feedStats: values.sse,
    cpuProf: values['cpu-prof'],
    log,
  });
  const loadClient = forkClient(LOAD_SCRIPT);
  const beforeMain = values.before ? await buildRefForBench(ROOT, values.before) : undefined;

  const ctx: Context = { database, build, beforeMain, keys, tmp, profDir, deviceClients: [deviceClient], loadClient, deviceIds, opts };
  if (values.workers !== undefined) return acrossWorkers(ctx, int('workers', values.workers, 2, 16), database.description);
  const results: RunResult[] = [];
  if (opts.warmup) {
    // Without it the bench's first run meets a cold cluster (pg_wal has no segments to recycle:
    // each 16 MiB of WAL is a new file, zero-filled and fsynced; 8 of them in that run, 0-1 in
    // any later one) and cold device and load clients, and the server going first in round 1
    // (always ours with --before) came out slower: the bias of the ours-vs-before comparison.
    const kind = kinds.find(isOurs) ?? kinds[0]!;
    const r = await runOne(ctx, kind, 0);
    log(`warm-up run (${LABEL[kind]}, not counted): single ${fmt(r.single.perSec)}/s, bulk ${fmt(r.bulk.perSec)}/s, p99 at ${opts.rate}/s ${fmt(r.latency.p99, 1)} ms; ${clusterLine(r.cluster)}`);
  }
  for (let round = 1; round <= opts.rounds; round++) {
    // Rotated: each server goes first in turn.
    const order = kinds.map((_, i) => kinds[(i + round - 1) % kinds.length]!);
    for (const kind of order) {
      const r = await runOne(ctx, kind, round);
      results.push(r);
      const t = (x: Throughput) =>
        `${fmt(x.perSec)}/s (${fmt(x.received)} of ${fmt(x.accepted)} accepted received, server CPU ${fmt(x.serverCpuUs)} µs each` +
        (Number.isNaN(x.dbCpuUs) ? '' : `, PostgreSQL ${fmt(x.dbCpuUs)} µs each`) +
        (x.rejected > 0 ? `, ${fmt(x.rejected)} rejected ${JSON.stringify(x.errors)}` : '') +
        ')';
      const l = (x: Latency) =>
        `p50 ${fmt(x.p50, 1)} / p99 ${fmt(x.p99, 1)} / p99.9 ${fmt(x.p999, 1)} / max ${fmt(x.max, 1)} ms (${fmt(x.received)} of ${fmt(x.sent)} received; HTTP answer p99 ${fmt(x.answerP99, 1)} ms)` +
        `\n    ${fmt(x.slow)} over 10 ms; sent at (s: count, 250 ms buckets with 3 or more): ${x.slowAt.map((b) => `${b.atS}: ${b.count}`).join(', ') || '–'}` +
        (x.probe ? `\n    probe: ${probeLine(x.probe)}` : '');
      log(`round ${round} ${LABEL[kind]}: single ${t(r.single)}; bulk ${t(r.bulk)}`);
      log(`round ${round} ${LABEL[kind]}: at ${opts.rate}/s ${l(r.latency)}`);
      if (r.afterBurst) log(`round ${round} ${LABEL[kind]}: at ${opts.rate}/s right after a ${fmt(opts.burst)} burst, not acking: ${l(r.afterBurst)}`);
      if (r.cross) log(`round ${round} ${LABEL[kind]}: across instances ${l(r.cross)}`);
      log(`round ${round} ${LABEL[kind]}: ${clusterLine(r.cluster)}`);
      if (r.webhook) log(`round ${round} ${LABEL[kind]}: webhook got ${fmt(r.webhook.received)} of ${fmt(r.webhook.expected)} events by the end${r.webhook.caughtUp ? '' : ' (did NOT catch up before the fixed-rate run)'}; committed → webhook p50 ${fmt(r.webhook.committed.p50, 1)} / p99 ${fmt(r.webhook.committed.p99, 1)} / max ${fmt(r.webhook.committed.max, 1)} ms; transaction start → webhook p50 ${fmt(r.webhook.txStart.p50, 1)} / p99 ${fmt(r.webhook.txStart.p99, 1)} ms`);
      if (r.feed) {
        const f = r.feed;
        log(
          `round ${round} ${LABEL[kind]}: subscriber got ${fmt(f.received)} of ${fmt(f.expected)} events (dropped by the server and reconnected ${f.reconnects}×); ` +
            `committed → subscriber p50 ${fmt(f.committed.p50, 1)} / p99 ${fmt(f.committed.p99, 1)} / max ${fmt(f.committed.max, 1)} ms; ` +
            `transaction start → subscriber p50 ${fmt(f.txStart.p50, 1)} / p99 ${fmt(f.txStart.p99, 1)} / max ${fmt(f.txStart.max, 1)} ms`,
        );
      }
      if (r.passes) log(`round ${round} ${LABEL[kind]}: at ${fmt(opts.rate)}/s, ${fmt(r.passes.perSec, 1)} sequencing passes/s (${fmt(r.passes.msPerPass, 2)} ms of PostgreSQL each), ${fmt(r.passes.readsPerSec, 1)} feed reads/s (${fmt(r.passes.msPerRead, 2)} ms each)`);
    }
  }
  if (values.sse) printFeedSummary(results, { devices, opts, description: database.description });
  else printSummary(results, { devices, opts, description: database.description });
  if (profDir) await summariseCpuProfiles(profDir, log);
  const invalid = results.filter((r) =>
    [r.single, r.bulk].some((x) => x.received < x.accepted || x.rejected > 0) || [r.latency, r.afterBurst, r.cross].some((x) => x && x.received < x.sent) ||
    (r.feed !== undefined && r.feed.received < r.feed.expected),
  );
  if (invalid.length > 0) {
    log(`\nINVALID: ${invalid.length} run(s) lost or rejected actuations; see above.`);
    return 1;
  }
  return 0;
}

interface Options {
  rounds: number;
  ack: boolean;
  connections: number;
  inFlight: number;
  single: number;
  rate: number;
  seconds: number;
  bulkTotal: number;
  bulkSize: number;
  bulkInFlight: number;
  burst: number;
  probe: boolean;
  cross: boolean;
  /** One run of our server before round 1, not counted. */
  warmup: boolean;
  dbStats: boolean;
  webhook: boolean;
  sse: boolean;
}
interface Context {
  database: BenchDatabaseServer;
  build: BenchBuild;
  /** dist/main.js of the --before build. */
  beforeMain?: string;
  keys: BenchKeys;
  tmp: string;
  profDir: string | undefined;
  deviceClients: ChildProcess[];
  loadClient: ChildProcess;
  deviceIds: string[];
  opts: Options;
}

async function runOne(ctx: Context, kind: Kind, round: number): Promise<RunResult> {
  const { opts } = ctx;
  const ours = isOurs(kind);
  const db = ours ? await ctx.database.create(`${isBefore(kind) ? 'b' : 'a'}${round}${kind}`) : undefined;
  // Every run, ours or bare, starts from the same cluster state (database.ts, `checkpoint`).
  await ctx.database.checkpoint();
  const cluster = await ctx.database.activity();
  const servers: RunningServer[] = [];
  let subscriber: BenchSseSubscriber | undefined;
  let webhook: BenchWebhookReceiver | undefined;
  const probeFile = (name: string) => path.join(ctx.tmp, `probe-${kind}-r${round}-${name}.jsonl`);
  const start = async (name: string) => {
    const s = await startServer({
      kind: ours ? 'ours' : 'bare',
      script: isBefore(kind) ? ctx.beforeMain! : ours ? ctx.build.serverMain : kind === 'node' ? ctx.build.bareNodeServer : ctx.build.bareActuationServer,
      databaseUrl: db?.url,
      keys: ctx.keys,
      tmp: ctx.tmp,
      instanceId: `bench-${process.pid}-r${round}-${name}`,
      nodeArgs: [
        ...(ctx.profDir && ours && round > 0 ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profDir}`, `--cpu-prof-name=${kind}-r${round}-${name}.cpuprofile`] : []),
        ...(opts.probe ? ['--import', PROBE_HOOK_IMPORT] : []),
      ],
      env: {
        ...(opts.probe ? { BENCH_PROBE_FILE: probeFile(name) } : {}),
        // Every variant alike (the receiver is on 127.0.0.1); only the subscriber's has an endpoint.
        ...(opts.webhook ? { WEBHOOK_ALLOW_PRIVATE: 'true' } : {}),
      },
    });
    servers.push(s);
    return s;
  };

  try {
    const a = await start('a');
    if (kind === 'nofeed') {
      const client = new pg.Client(db!.url);
      await client.connect();
      await client.query(NO_ACTUATION_EVENTS);
      await client.end();
    }
    if (isSse(kind)) subscriber = await startBenchSseSubscriber(a.origin, a.authorization);
    if (isSse(kind) && opts.webhook) webhook = await startBenchWebhookReceiver(a);
    await connectDevices(ctx.deviceClients, a.port);
    // Just-connected devices drain their (empty) backlog first, then take live deliveries.
    await sleep(1_500);
    const load = (run: Omit<LoadRun, 'origin' | 'authorization' | 'deviceIds' | 'connections'>, target = a) =>
      request<'ran', LoadReply, LoadRequest>(
        ctx.loadClient,
        { op: 'run', origin: target.origin, authorization: target.authorization, deviceIds: ctx.deviceIds, connections: opts.connections, ...run },
        'ran',
        run.deadlineMs + 60_000,
      );

    // Warm-up (JIT, pools), not measured.
    await measureThroughput(ctx, a, db?.url, () => load({ total: 2_000, mode: { kind: 'closed', inFlight: opts.inFlight }, deadlineMs: 60_000 }));
    const single = await measureThroughput(ctx, a, db?.url, () => load({ total: opts.single, mode: { kind: 'closed', inFlight: opts.inFlight }, deadlineMs: 180_000 }), 'the single-POST run');
    const feedStats = opts.sse && kind !== 'nofeed';
    // The endpoint starts the fixed-rate run with no queue of its own (one endpoint takes one event at a time).
    let webhookCaughtUp = true;
    if (webhook) {
      if (ctx.opts.ack) await waitUntilAllAcked(db!.url, 30_000);
      webhookCaughtUp = await webhook.waitForCount(await countEvents(db!.url), 180_000);
      if (!webhookCaughtUp) log(`round ${round} ${LABEL[kind]}: the webhook did not catch up within 180 s before the fixed-rate run (${fmt(webhook.events)} events)`);
    }
    // Backends report function calls when idle, at most once a second: the samples a second apart from the work.
    const calls = async () => {
      await sleep(1_200);
      return { at: Date.now(), calls: await functionCalls(db!.url, FEED_FUNCTIONS) };
    };
    const callsBefore = feedStats ? await calls() : undefined;
    await subscriber?.record(true);
    webhook?.takeArrivals();
    webhook?.record(true);
    const latency = await measureLatency(ctx, () => load({ total: opts.rate * opts.seconds, mode: { kind: 'open', rate: opts.rate }, deadlineMs: opts.seconds * 1000 + 30_000 }), undefined, opts.probe ? probeFile('a') : undefined);
    if ((subscriber || feedStats) && ctx.opts.ack) await waitUntilAllAcked(db!.url, 30_000);
    const arrivals = (await subscriber?.record(false)) ?? [];
    let passes: RunResult['passes'];
    if (callsBefore) {
      const after = await calls();
      const d = (name: string) => ({ calls: after.calls.get(name)!.calls - callsBefore.calls.get(name)!.calls, ms: after.calls.get(name)!.totalMs - callsBefore.calls.get(name)!.totalMs });
      const seconds = (after.at - callsBefore.at) / 1000;
      const seq = d('sequence_and_read_events');
      const read = d('events_after');
      passes = { perSec: seq.calls / seconds, msPerPass: seq.ms / seq.calls, readsPerSec: read.calls / seconds, msPerRead: read.calls ? read.ms / read.calls : Number.NaN };
    }
    let webhookArrivals: SseArrival[] = [];
    if (webhook) {
      // Every event of the fixed-rate run, however long the endpoint's queue takes (bounded).
      if (!(await webhook.waitForCount(await countEvents(db!.url), 180_000))) log(`round ${round} ${LABEL[kind]}: the webhook did not get the fixed-rate run's events within 180 s`);
      webhook.record(false);
      webhookArrivals = webhook.takeArrivals();
    }
    await measureThroughput(ctx, a, db?.url, () =>
      load({ total: Math.min(opts.bulkTotal, 10 * opts.bulkSize), bulk: opts.bulkSize, mode: { kind: 'closed', inFlight: opts.bulkInFlight }, deadlineMs: 60_000 }),
    );
    const bulk = await measureThroughput(ctx, a, db?.url, () =>
      load({ total: opts.bulkTotal, bulk: opts.bulkSize, mode: { kind: 'closed', inFlight: opts.bulkInFlight }, deadlineMs: 180_000 }), 'the bulk run',
    );

    let cross: Latency | undefined;
    if (ours && opts.cross) {
      // Devices move to a second instance on the same database; POSTs still go to the first.
      // They move once their acks are all in: actuations still unacked would be re-sent on
      // reconnect (REDELIVER_UNACKED) as a paced backlog, and that is not what this run measures.
      if (ctx.opts.ack) await waitUntilAllAcked(db!.url, 30_000);
      await resetDevices(ctx.deviceClients);
      const b = await start('b');
      await connectDevices(ctx.deviceClients, b.port);
      await sleep(1_500);
      await measureLatency(ctx, () => load({ total: 1_000, mode: { kind: 'open', rate: opts.rate }, deadlineMs: 30_000 }));
      cross = await measureLatency(ctx, () => load({ total: opts.rate * opts.seconds, mode: { kind: 'open', rate: opts.rate }, deadlineMs: opts.seconds * 1000 + 30_000 }));
    }
    let feed: RunResult['feed'];
    let webhookResult: RunResult['webhook'];
    if (subscriber) {
      // Every actuation makes three events (queued, sent, acked; a direct send's first two in one
      // transaction), every session one on connecting; the subscriber must have them all.
      if (ctx.opts.ack) await waitUntilAllAcked(db!.url, 60_000);
      const expected = await countEvents(db!.url);
      const got = await subscriber.waitForCount(expected, 60_000);
      const committed = (await tracksCommitTimestamps(db!.url)) ? (await commitLatencies(db!.url, arrivals)).sort((x, y) => x - y) : [];
      const txStart = arrivals.map((x) => x.arrivedMs - x.atMs).sort((x, y) => x - y);
      const spread = (sorted: number[]) => ({ p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN });
      feed = { committed: spread(committed), txStart: spread(txStart), received: got.events, expected, reconnects: got.reconnects };
      if (webhook) {
        const hookCommitted = (await tracksCommitTimestamps(db!.url)) ? (await commitLatencies(db!.url, webhookArrivals)).sort((x, y) => x - y) : [];
        const hookTxStart = webhookArrivals.map((x) => x.arrivedMs - x.atMs).sort((x, y) => x - y);
        webhookResult = { committed: spread(hookCommitted), txStart: { p50: percentile(hookTxStart, 50), p99: percentile(hookTxStart, 99) }, received: webhook.events, expected, caughtUp: webhookCaughtUp };
      }
    }
    // The issue's tail condition: non-acking devices right after a burst (ours: that many unacked `sent` rows).
    // After the across-instances run the devices are on b: the burst and the latency go to b then.
    const holder = servers.at(-1)!;
    let afterBurst: Latency | undefined;
    if (opts.burst > 0) {
      await measureThroughput(
        ctx,
        holder,
        undefined,
        () => load({ total: opts.burst, bulk: opts.bulkSize, mode: { kind: 'closed', inFlight: opts.bulkInFlight }, deadlineMs: 120_000 }, holder),
        undefined,
        false,
      );
      afterBurst = await measureLatency(
        ctx,
        () => load({ total: opts.rate * opts.seconds, mode: { kind: 'open', rate: opts.rate }, deadlineMs: opts.seconds * 1000 + 30_000 }, holder),
        false,
        opts.probe ? probeFile(holder === a ? 'a' : 'b') : undefined,
      );
    }

    return { kind, round, single, latency, bulk, afterBurst, cross, feed, passes, webhook: webhookResult, cluster: await cluster.since() };
  } finally {
    await subscriber?.close();
    webhook?.close();
    await resetDevices(ctx.deviceClients);
    // SIGTERM first when profiling: node writes the --cpu-prof file on a clean exit only.
    for (const s of servers) await killChild(s.server.child, ctx.profDir ? 'SIGTERM' : 'SIGKILL', 15_000);
    await db?.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}

async function measureThroughput(
  ctx: Context,
  server: RunningServer,
  dbUrl: string | undefined,
  run: () => Promise<LoadResult>,
  phase?: string,
  ack = ctx.opts.ack,
): Promise<Throughput> {
  await listen(ctx.deviceClients, ack, false);
  const statements = dbUrl && phase && ctx.opts.dbStats ? await statementStats(dbUrl, log) : undefined;
  const dbCpu = dbUrl ? await databaseCpu(dbUrl) : undefined;
  const dbBefore = await dbCpu?.sample();
  const cpuBefore = cpuMs(server.server.pid);
  const sent = await run();
  const got = await waitForReceipts(ctx.deviceClients, sent.accepted);
  const cpu = cpuMs(server.server.pid) - cpuBefore;
  if (got.count < sent.accepted) log(`${phase ?? 'a run'}: ${fmt(sent.accepted - got.count)} not received; the server's last output:\n${server.server.output.text().slice(-2_000)}`);
  const dbMs = dbCpu && dbBefore ? (await dbCpu.sample()).since(dbBefore) : Number.NaN;
  await dbCpu?.close();
  await statements?.report(phase!, 'actuation', got.count);
  return {
    dbCpuUs: (dbMs * 1000) / got.count,
    accepted: sent.accepted,
    received: got.count,
    perSec: (got.count / (got.lastMs - sent.firstSendMs)) * 1000,
    serverCpuUs: (cpu * 1000) / got.count,
    rejected: sent.rejected,
    errors: sent.errors,
  };
}

async function measureLatency(ctx: Context, run: () => Promise<LoadResult>, ack = ctx.opts.ack, probeFile?: string): Promise<Latency> {
  await listen(ctx.deviceClients, ack, true);
  const sent = await run();
  const got = await waitForReceipts(ctx.deviceClients, sent.accepted, { latencies: true });
  // Arrival order is about send order at a fixed rate: the i-th arrival was sent about i / rate s in.
  const rate = got.latencies.length / Math.max(1, (got.lastMs - sent.firstSendMs) / 1000);
  const buckets = new Map<number, number>();
  got.latencies.forEach((ms, i) => {
    if (ms <= 10) return;
    const at = Math.floor((i / rate) * 4) / 4;
    buckets.set(at, (buckets.get(at) ?? 0) + 1);
  });
  const slowAt = [...buckets].filter(([, n]) => n >= 3).map(([atS, count]) => ({ atS, count }));
  const slow = got.latencies.filter((ms) => ms > 10).length;
  const sorted = got.latencies.sort((x, y) => x - y);
  return {
    slowAt,
    slow,
    sent: sent.accepted + sent.rejected,
    received: got.count,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.at(-1) ?? Number.NaN,
    answerP99: percentile(sent.answerSample, 99),
    rejected: sent.rejected,
    probe: probeFile ? readProbe(probeFile, sent.firstSendMs, got.lastMs) : undefined,
  };
}

function clusterLine(c: ClusterActivity): string {
  const files = Number.isNaN(c.newWalFiles) ? '' : `, ${fmt(c.newWalFiles)} new WAL files`;
  return `PostgreSQL wrote ${fmt(c.walMiB)} MiB of WAL${files}, ${fmt(c.checkpoints)} checkpoint(s) during the run`;
}

function probeLine(p: ProbeWindow): string {
  return (
    `${p.stalls} stalls ≥ ${STALL_MS} ms in ${fmt(p.seconds, 1)} s (${p.gcStalls} mostly GC, ${p.offCpuStalls} mostly off the CPU; max ${fmt(p.stallMaxMs, 1)} ms, ${fmt(p.stallTotalMs)} ms in all); ` +
    `GC ${p.gcPauses} pauses ≥ 1 ms, ${fmt(p.gcTotalMs)} ms, max ${fmt(p.gcMaxMs, 1)} ms; loop delay p99 ≤ ${fmt(p.loopP99MaxMs, 1)} / max ${fmt(p.loopMaxMs, 1)} ms; ` +
    `worst: ${p.worst.map((w) => `+${w.atMs} ms: ${w.ms} ms (GC ${w.gcMs}, CPU ${w.cpuMs})`).join(', ') || '–'}`
  );
}

function printSummary(results: RunResult[], info: { devices: number; opts: Options; description: string }): void {
  const { opts } = info;
  const of = (kind: Kind) => results.filter((r) => r.kind === kind);
  const ours = of('ours');
  const withBefore = of('before').length > 0;
  const m = (rs: RunResult[], f: (r: RunResult) => number | undefined) => median(rs.map((r) => f(r) ?? Number.NaN));
  /** ours / baseline, per round, then the median. */
  const ratio = (base: Kind, f: (r: RunResult) => number | undefined) =>
    median(
      ours.map((o) => {
        const b = of(base).find((x) => x.round === o.round);
        return b ? (f(o) ?? Number.NaN) / (f(b) ?? Number.NaN) : Number.NaN;
      }),
    );
  const verdict = (ok: boolean, value: number) => (Number.isFinite(value) ? (ok ? 'met' : 'MISSED') : 'n/a');
  const lat = (rs: RunResult[], f: (r: RunResult) => Latency | undefined) =>
    rs.length === 0 || rs.every((r) => !f(r))
      ? '–'
      : `${fmt(m(rs, (r) => f(r)?.p50), 1)} / ${fmt(m(rs, (r) => f(r)?.p99), 1)} / ${fmt(m(rs, (r) => f(r)?.p999), 1)} / ${fmt(m(rs, (r) => f(r)?.max), 1)} ms`;
  const x = (v: number, digits = 2) => (Number.isFinite(v) ? `${fmt(v, digits)}×` : 'n/a');
  const cpu = (rs: RunResult[]) => (rs.length === 0 ? '–' : `${fmt(m(rs, (r) => r.single.serverCpuUs))} / ${fmt(m(rs, (r) => r.bulk.serverCpuUs))} µs`);

  const singleVsNode = ratio('node', (r) => r.single.perSec);
  const bulkOurs = m(ours, (r) => r.bulk.perSec);
  const p99 = m(ours, (r) => r.latency.p99);
  const burstP99 = m(ours, (r) => r.afterBurst?.p99);
  const crossP99 = m(ours, (r) => r.cross?.p99);
  const singleCpu = m(ours, (r) => r.single.serverCpuUs);
  const bulkCpu = m(ours, (r) => r.bulk.serverCpuUs);
  const header = [
    `${fmt(info.devices)} devices (${opts.ack ? 'acking' : 'not acking'}), ${opts.connections} keep-alive connections, median of ${opts.rounds}`,
    LABEL.ours,
    LABEL.node,
    LABEL.bare,
    'ours / node',
    'ours / express',
    'target (issue 12)',
    ...(withBefore ? [LABEL.before, 'ours / before'] : []),
  ];
  const row = (label: string, f: (rs: RunResult[]) => string, r: (base: Kind) => string, target: string) => [
    label,
    f(ours),
    f(of('node')),
    f(of('bare')),
    r('node'),
    r('bare'),
    target,
    ...(withBefore ? [f(of('before')), r('before')] : []),
  ];
  const rows = [
    row(
      `single POST → device, actuations/s (${opts.inFlight} in flight)`,
      (rs) => (rs.length ? fmt(m(rs, (r) => r.single.perSec)) : '–'),
      (b) => x(ratio(b, (r) => r.single.perSec)),
      `≥ 0.3× node (${verdict(singleVsNode >= 0.3, singleVsNode)})`,
    ),
    row(`POST → device p50 / p99 / p99.9 / max at ${fmt(opts.rate)}/s (${opts.seconds} s)`, (rs) => lat(rs, (r) => r.latency), (b) => x(ratio(b, (r) => r.latency.p99), 1), `p99 ≤ 10 ms (${verdict(p99 <= 10, p99)})`),
    row(
      `same, right after a ${fmt(opts.burst)} burst, devices not acking`,
      (rs) => lat(rs, (r) => r.afterBurst),
      (b) => x(ratio(b, (r) => r.afterBurst?.p99), 1),
      `p99 ≤ 10 ms (${verdict(burstP99 <= 10, burstP99)})`,
    ),
    row(`across instances (POST to A, device on B), at ${fmt(opts.rate)}/s`, (rs) => lat(rs, (r) => r.cross), () => '', `p99 ≤ 50 ms (${verdict(crossP99 <= 50, crossP99)})`),
    row(
      `bulk POST (${fmt(opts.bulkSize)} items, ${opts.bulkInFlight} in flight) → device, actuations/s`,
      (rs) => (rs.length ? fmt(m(rs, (r) => r.bulk.perSec)) : '–'),
      (b) => x(ratio(b, (r) => r.bulk.perSec)),
      `≥ 20,000/s (${verdict(bulkOurs >= 20_000, bulkOurs)})`,
    ),
    row(
      'server CPU per actuation, single / bulk',
      cpu,
      (b) => `${x(ratio(b, (r) => r.single.serverCpuUs), 1)} / ${x(ratio(b, (r) => r.bulk.serverCpuUs), 1)}`,
      `≤ 200 / ≤ 35 µs (${verdict(singleCpu <= 200, singleCpu)} / ${verdict(bulkCpu <= 35, bulkCpu)})`,
    ),
    row('PostgreSQL CPU per actuation, single / bulk', (rs) => (rs.length && Number.isFinite(m(rs, (r) => r.single.dbCpuUs)) ? `${fmt(m(rs, (r) => r.single.dbCpuUs))} / ${fmt(m(rs, (r) => r.bulk.dbCpuUs))} µs` : '–'), () => '', ''),
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${info.description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
}

function printFeedSummary(results: RunResult[], info: { devices: number; opts: Options; description: string }): void {
  const { opts } = info;
  const of = (kind: Kind) => results.filter((r) => r.kind === kind);
  const m = (kind: Kind, f: (r: RunResult) => number | undefined) => median(of(kind).map((r) => f(r) ?? Number.NaN));
  const ratio = (kind: Kind, f: (r: RunResult) => number) =>
    median(of(kind).map((r) => {
      const base = results.find((x) => x.kind === 'nofeed' && x.round === r.round);
      return base ? f(r) / f(base) : Number.NaN;
    }));
  const cell = (kind: Kind, f: (r: RunResult) => number, digits = 0) => {
    const value = m(kind, f);
    return kind === 'nofeed' ? fmt(value, digits) : `${fmt(value, digits)} (${fmt(ratio(kind, f), 2)}×)`;
  };
  // Columns in the order the kinds ran: feed off, then (feed without a subscriber, or the --before variant) and the subscriber's.
  const kinds = (['nofeed', 'ours', 'sse', 'ssebefore'] as const).filter((k) => of(k).length > 0);
  const header = [`${fmt(info.devices)} devices (${opts.ack ? 'acking' : 'not acking'}), median of ${opts.rounds}`, ...kinds.map((k) => (k === 'ours' ? `${LABEL.ours} (feed, no subscriber)` : LABEL[k]))];
  /** A row of figures only the subscriber's variants have ('–' for the others). */
  const sseRow = (label: string, f: (k: Kind) => string) => [label, ...kinds.map((k) => (isSse(k) ? f(k) : '–'))];
  const rows = [
    [`single POST → device, actuations/s (${opts.inFlight} in flight)`, ...kinds.map((k) => cell(k, (r) => r.single.perSec))],
    [`bulk POST (${fmt(opts.bulkSize)} items) → device, actuations/s`, ...kinds.map((k) => cell(k, (r) => r.bulk.perSec))],
    ['PostgreSQL CPU per actuation, single', ...kinds.map((k) => `${cell(k, (r) => r.single.dbCpuUs)} µs`)],
    ['PostgreSQL CPU per actuation, bulk', ...kinds.map((k) => `${cell(k, (r) => r.bulk.dbCpuUs)} µs`)],
    ['server CPU per actuation, single / bulk', ...kinds.map((k) => `${fmt(m(k, (r) => r.single.serverCpuUs))} / ${fmt(m(k, (r) => r.bulk.serverCpuUs))} µs`)],
    [`POST → device p50 / p99 at ${fmt(opts.rate)}/s`, ...kinds.map((k) => `${fmt(m(k, (r) => r.latency.p50), 1)} / ${fmt(m(k, (r) => r.latency.p99), 1)} ms`)],
    sseRow(`committed → SSE subscriber p50 / p99 / max at ${fmt(opts.rate)}/s`, (k) => `${fmt(m(k, (r) => r.feed?.committed.p50), 1)} / ${fmt(m(k, (r) => r.feed?.committed.p99), 1)} / ${fmt(m(k, (r) => r.feed?.committed.max), 1)} ms`),
    sseRow(`transaction start → SSE subscriber p50 / p99 / max at ${fmt(opts.rate)}/s`, (k) => `${fmt(m(k, (r) => r.feed?.txStart.p50), 1)} / ${fmt(m(k, (r) => r.feed?.txStart.p99), 1)} / ${fmt(m(k, (r) => r.feed?.txStart.max), 1)} ms`),
    [`sequencing passes/s (PostgreSQL ms per pass) at ${fmt(opts.rate)}/s`, ...kinds.map((k) => (k === 'nofeed' ? '–' : `${fmt(m(k, (r) => r.passes?.perSec), 1)} (${fmt(m(k, (r) => r.passes?.msPerPass), 2)} ms)`))],
    sseRow(`feed reads/s (PostgreSQL ms per read) at ${fmt(opts.rate)}/s`, (k) => `${fmt(m(k, (r) => r.passes?.readsPerSec), 1)} (${fmt(m(k, (r) => r.passes?.msPerRead), 2)} ms)`),
    sseRow('events the subscriber received / recorded (reconnects after a drop)', (k) => `${fmt(m(k, (r) => r.feed?.received))} / ${fmt(m(k, (r) => r.feed?.expected))} (${fmt(m(k, (r) => r.feed?.reconnects))})`),
    ...(opts.webhook
      ? [
          sseRow(`committed → webhook p50 / p99 / max at ${fmt(opts.rate)}/s (its queue included)`, (k) => `${fmt(m(k, (r) => r.webhook?.committed.p50), 1)} / ${fmt(m(k, (r) => r.webhook?.committed.p99), 1)} / ${fmt(m(k, (r) => r.webhook?.committed.max), 1)} ms`),
          sseRow(`transaction start → webhook p50 / p99 at ${fmt(opts.rate)}/s`, (k) => `${fmt(m(k, (r) => r.webhook?.txStart.p50), 1)} / ${fmt(m(k, (r) => r.webhook?.txStart.p99), 1)} ms`),
          sseRow('events the webhook received by the end / recorded', (k) => `${fmt(m(k, (r) => r.webhook?.received))} / ${fmt(m(k, (r) => r.webhook?.expected))}`),
        ]
      : []),
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${info.description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
}

async function countEvents(url: string): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    // Every event recorded (migration 0019: numbered or not yet): the subscriber must get them all.
    const { rows } = await client.query<{ n: number }>('select count(*)::int as n from event_rows');
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

interface WorkersResult {
  workers: number;
  round: number;
  sent: number;
  received: number;
  all: Latency;
  /** Sent by the worker that took the POST, in its transaction. */
  direct: Latency;
  /** Claimed after the NOTIFY: the POST and the device on different workers. */
  claimed: Latency;
  devicesPerWorker: number[];
}

/** `--workers N`: WORKERS=1 beside WORKERS=N, rounds alternating which goes first. */
async function acrossWorkers(ctx: Context, workers: number, description: string): Promise<number> {
  const { opts } = ctx;
  const results: WorkersResult[] = [];
  // Not counted, as in the main bench: the first run would meet a cold cluster and cold clients.
  if (opts.warmup) await runWorkers(ctx, 1, 0);
  for (let round = 1; round <= opts.rounds; round++) {
    const order = round % 2 === 1 ? [1, workers] : [workers, 1];
    for (const w of order) {
      const r = await runWorkers(ctx, w, round);
      results.push(r);
      const l = (x: Latency) => `${fmt(x.received)}: p50 ${fmt(x.p50, 1)} / p99 ${fmt(x.p99, 1)} / p99.9 ${fmt(x.p999, 1)} / max ${fmt(x.max, 1)} ms`;
      log(
        `round ${round} WORKERS=${w}: ${fmt(r.received)} of ${fmt(r.sent)} received at ${opts.rate}/s; all ${l(r.all)}; direct ${l(r.direct)}; ` +
          `claimed by another worker ${l(r.claimed)}; devices per worker ${r.devicesPerWorker.map((n) => fmt(n)).join(' / ')}` +
          `\n    over 50 ms, sent at (s: count, 250 ms buckets with 3 or more): ${r.all.slowAt.map((b) => `${b.atS}: ${b.count}`).join(', ') || '–'}`,
      );
    }
  }
  const m = (w: number, f: (r: WorkersResult) => number) => median(results.filter((r) => r.workers === w).map(f));
  const lat = (w: number, f: (r: WorkersResult) => Latency) =>
    `${fmt(m(w, (r) => f(r).p50), 1)} / ${fmt(m(w, (r) => f(r).p99), 1)} / ${fmt(m(w, (r) => f(r).p999), 1)} ms`;
  const share = (w: number, f: (r: WorkersResult) => Latency) => `${fmt(m(w, (r) => (100 * f(r).received) / Math.max(1, r.received)))}%`;
  const header = [`${fmt(ctx.deviceIds.length)} devices (acking), ${fmt(opts.rate)}/s for ${opts.seconds} s, median of ${opts.rounds}`, 'WORKERS=1', `WORKERS=${workers}`];
  const rows = [
    ['POST → device p50 / p99 / p99.9, all', lat(1, (r) => r.all), lat(workers, (r) => r.all)],
    ['  sent by the worker that took the POST (share)', `${lat(1, (r) => r.direct)} (${share(1, (r) => r.direct)})`, `${lat(workers, (r) => r.direct)} (${share(workers, (r) => r.direct)})`],
    ['  claimed by another worker after NOTIFY (share)', `${lat(1, (r) => r.claimed)} (${share(1, (r) => r.claimed)})`, `${lat(workers, (r) => r.claimed)} (${share(workers, (r) => r.claimed)})`],
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
  const lost = results.filter((r) => r.received < r.sent);
  if (lost.length > 0) {
    log(`\nINVALID: ${lost.length} run(s) lost actuations; see above.`);
    return 1;
  }
  return 0;
}

async function runWorkers(ctx: Context, workers: number, round: number): Promise<WorkersResult> {
  const { opts } = ctx;
  const db = await ctx.database.create(`w${round}x${workers}`);
  await ctx.database.checkpoint();
  const instanceId = `bench-${process.pid}-r${round}-x${workers}`;
  let started: WorkersServer | undefined;
  try {
    started = await startWorkersServer({ script: ctx.build.serverMain, databaseUrl: db.url, keys: ctx.keys, tmp: ctx.tmp, instanceId, workers: workers });
    const { running: server } = started;
    await connectDevices(ctx.deviceClients, server.port);
    await sleep(1_500);
    const target = server;
    const load = (run: Omit<LoadRun, 'origin' | 'authorization' | 'deviceIds' | 'connections'>) =>
      request<'ran', LoadReply, LoadRequest>(
        ctx.loadClient,
        { op: 'run', origin: target.origin, authorization: target.authorization, deviceIds: ctx.deviceIds, connections: opts.connections, ...run },
        'ran',
        run.deadlineMs + 60_000,
      );
    // Warm-up (JIT and pools of every worker), not measured.
    await listen(ctx.deviceClients, true, false);
    const warm = await load({ total: 2_000 * workers, mode: { kind: 'closed', inFlight: opts.inFlight }, deadlineMs: 60_000 });
    await waitForReceipts(ctx.deviceClients, warm.accepted);
    await waitUntilAllAcked(db.url, 30_000);

    await listen(ctx.deviceClients, true, true);
    const sent = await load({ total: opts.rate * opts.seconds, mode: { kind: 'open', rate: opts.rate }, deadlineMs: opts.seconds * 1000 + 30_000 });
    const got = await waitForReceipts(ctx.deviceClients, sent.accepted, { latencies: true });
    const client = new pg.Client(db.url);
    await client.connect();
    let direct: Set<string>;
    let devicesPerWorker: number[];
    try {
      // A direct send is inserted as the sent row: sent_at is the submitting transaction's now().
      const d = await client.query<{ id: string }>(`select id from actuations where id = any($1::uuid[]) and sent_at = created_at`, [got.ids ?? []]);
      direct = new Set(d.rows.map((r) => r.id));
      const spread = await client.query<{ n: number }>(
        `select count(*)::int as n from device_sessions where disconnected_at is null group by instance_id order by instance_id`,
      );
      devicesPerWorker = spread.rows.map((r) => r.n);
    } finally {
      await client.end();
    }
    const ids = got.ids ?? [];
    // When the slow ones were sent (arrival order is about send order at a fixed rate): 250 ms buckets holding 3 or more.
    const perS = got.latencies.length / Math.max(1, (got.lastMs - sent.firstSendMs) / 1000);
    const buckets = new Map<number, number>();
    got.latencies.forEach((ms, i) => {
      if (ms > 50) buckets.set(Math.floor((i / perS) * 4) / 4, (buckets.get(Math.floor((i / perS) * 4) / 4) ?? 0) + 1);
    });
    const all: number[] = [];
    const directMs: number[] = [];
    const claimedMs: number[] = [];
    got.latencies.forEach((ms, i) => {
      all.push(ms);
      (direct.has(ids[i]!) ? directMs : claimedMs).push(ms);
    });
    const summary = (values: number[]): Latency => {
      const sorted = values.sort((x, y) => x - y);
      return {
        sent: values.length,
        received: values.length,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        p999: percentile(sorted, 99.9),
        max: sorted.at(-1) ?? Number.NaN,
        answerP99: Number.NaN,
        rejected: 0,
        slowAt: [],
        slow: sorted.filter((x) => x > 10).length,
      };
    };
    const allSummary = summary(all);
    allSummary.slowAt = [...buckets].filter(([, n]) => n >= 3).map(([atS, count]) => ({ atS, count }));
    return {
      workers,
      round,
      sent: sent.accepted + sent.rejected,
      received: got.count,
      all: allSummary,
      direct: summary(directMs),
      claimed: summary(claimedMs),
      devicesPerWorker,
    };
  } finally {
    await resetDevices(ctx.deviceClients);
    if (started) await stopWorkersServer(started);
    await db.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}
