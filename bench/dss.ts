/**
 * `npm run bench -- dss`: DSS datapoint events -> rule -> actuation -> device,
 * against the real server (built from src/, its own process, a fresh PostgreSQL
 * database with default durability per round).
 *
 * The project's DSS simulator runs in bench/dss-feeder.ts (a child process) and
 * is configured as a stream over REST (`POST /v1/dss/streams`); one rule
 * (`POST /v1/rules`) turns every datapoint of property `bench` into an actuation
 * for device `{{dsn}}` with param t = `{{value}}`, the event's scheduled time.
 * Devices: bench/device-client.ts (raw sockets, real RS256 tokens), connected and
 * authenticated, acking unless `--ack off`. Per round:
 *  - latency: `--rate` events/s for `--seconds` over all devices, open loop;
 *    event -> device receipt from the scheduled emit time, p50/p99;
 *  - throughput over many devices: `--total` events over all devices, offered
 *    faster than taken (the stream's back-pressure sets the pace); events/s =
 *    received / (last receipt - first emit);
 *  - throughput over few devices: the same over `--few` devices (a device's
 *    actuations are committed and delivered in event order, so few devices means
 *    long per-device chains).
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Feed, FeederReply, FeederRequest } from './dss-feeder.js';
import type { BenchBuild } from './lib/build.js';
import { summariseCpuProfiles } from './lib/cpu-profile.js';
import { databaseCpu, type BenchDatabaseServer } from './lib/database.js';
import { connectDevices, listen, resetDevices, waitForReceipts } from './lib/devices.js';
import { request } from './lib/ipc.js';
import { startServer, type BenchKeys, type RunningServer } from './lib/our-server.js';
import { cpuMs, forkClient, killChild, sleep } from './lib/processes.js';
import { fmt, median, percentile, renderTables } from './lib/stats.js';
import { int, log, onOff } from './lib/cli.js';
import { prepareBenchRun } from './lib/setup.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEVICE_SCRIPT = path.join(ROOT, 'bench', 'device-client.ts');
const FEEDER_SCRIPT = path.join(ROOT, 'bench', 'dss-feeder.ts');

interface Throughput {
  sent: number;
  received: number;
  perSec: number;
  serverCpuUs: number;
  dbCpuUs: number;
}
interface RoundResult {
  round: number;
  /** DSS_STATE_ENABLED of this round's server. */
  state: boolean;
  p50: number;
  p99: number;
  max: number;
  latencySent: number;
  latencyReceived: number;
  many: Throughput;
  few: Throughput;
}

const usage = `usage: npm run bench -- dss [options]
  --devices N      simulated devices (dsns), connected and authenticated (default 1000)
  --few K          devices of the "few devices" throughput run (default 10)
  --rounds R       rounds, each with a fresh server and database (default 2)
  --ack on|off     devices ack every actuation (default on)
  --rate R         events/s of the latency run (default 500)
  --seconds S      length of the latency run (default 10)
  --total N        events of each throughput run (default 20000)
  --fsync on|off   embedded PostgreSQL durability (default on; ignored with DATABASE_URL)
  --state on|off|both  record the last known state and event log (DSS_STATE_ENABLED; default on);
                   both: each round runs without, then with, and the summary compares them
  --cpu-prof       V8 CPU profile of the server for the whole round (figures not comparable)`;

export async function dssBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '1000' },
      few: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '2' },
      ack: { type: 'string', default: 'on' },
      rate: { type: 'string', default: '500' },
      seconds: { type: 'string', default: '10' },
      total: { type: 'string', default: '20000' },
      fsync: { type: 'string', default: 'on' },
      state: { type: 'string', default: 'on' },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return 0;
  }
  const devices = int('devices', values.devices, 1, 9_000);
  const opts: Options = {
    few: int('few', values.few, 1, devices),
    rounds: int('rounds', values.rounds, 1, 9),
    ack: onOff('ack', values.ack),
    rate: int('rate', values.rate, 1, 50_000),
    seconds: int('seconds', values.seconds, 1, 120),
    total: int('total', values.total, 100, 1_000_000),
  };
  const fsync = onOff('fsync', values.fsync);
  if (!['on', 'off', 'both'].includes(values.state)) throw new Error('--state must be on, off or both');
  const stateModes = values.state === 'both' ? [false, true] : [values.state === 'on'];
  log(`dss bench: ${fmt(devices)} devices (${opts.ack ? 'acking every actuation' : 'not acking'}), one stream from the DSS simulator in its own process, one rule; ${opts.rounds} round(s)`);

  const { tmp, profDir, database, build, keys, deviceClient, deviceIds } = await prepareBenchRun({
    root: ROOT,
    deviceScript: DEVICE_SCRIPT,
    devices,
    fsync,
    cpuProf: values['cpu-prof'],
    log,
  });
  const feeder = forkClient(FEEDER_SCRIPT);

  const ctx: Context = { database, build, keys, tmp, profDir, deviceClients: [deviceClient], feeder, deviceIds, opts };
  const results: RoundResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) for (const state of stateModes) {
    const r = await runRound(ctx, round, state);
    results.push(r);
    const t = (x: Throughput) => `${fmt(x.perSec)} events/s (${fmt(x.received)} of ${fmt(x.sent)} received, server CPU ${fmt(x.serverCpuUs)} µs + PostgreSQL ${fmt(x.dbCpuUs)} µs each)`;
    log(
      `round ${round} (state ${state ? 'on' : 'off'}): at ${opts.rate}/s p50 ${fmt(r.p50, 1)} / p99 ${fmt(r.p99, 1)} / max ${fmt(r.max, 1)} ms (${fmt(r.latencyReceived)} of ${fmt(r.latencySent)} received); ` +
        `${fmt(devices)} devices ${t(r.many)}; ${opts.few} devices ${t(r.few)}`,
    );
  }
  for (const state of stateModes) printSummary(results.filter((r) => r.state === state), { devices, opts, description: `${database.description}; DSS state ${state ? 'on' : 'off'}` });
  if (stateModes.length === 2) {
    const m = (state: boolean, f: (r: RoundResult) => number) => median(results.filter((r) => r.state === state).map(f));
    log(
      `\nstate on / off, medians: many devices ${fmt(m(true, (r) => r.many.perSec) / m(false, (r) => r.many.perSec), 2)}×, ` +
        `few devices ${fmt(m(true, (r) => r.few.perSec) / m(false, (r) => r.few.perSec), 2)}×, p99 ${fmt(m(true, (r) => r.p99), 1)} vs ${fmt(m(false, (r) => r.p99), 1)} ms`,
    );
  }
  if (profDir) await summariseCpuProfiles(profDir, log);
  const invalid = results.filter((r) => r.latencyReceived < r.latencySent || r.many.received < r.many.sent || r.few.received < r.few.sent);
  if (invalid.length > 0) {
    log(`\nINVALID: ${invalid.length} round(s) lost events or actuations; see above.`);
    return 1;
  }
  return 0;
}

interface Options {
  few: number;
  rounds: number;
  ack: boolean;
  rate: number;
  seconds: number;
  total: number;
}
interface Context {
  database: BenchDatabaseServer;
  build: BenchBuild;
  keys: BenchKeys;
  tmp: string;
  profDir: string | undefined;
  deviceClients: ChildProcess[];
  feeder: ChildProcess;
  deviceIds: string[];
  opts: Options;
}

const feederCall = <Op extends FeederReply['op']>(ctx: Context, message: FeederRequest, expected: Op, timeoutMs: number) =>
  request<Op, FeederReply, FeederRequest>(ctx.feeder, message, expected, timeoutMs);

async function runRound(ctx: Context, round: number, state: boolean): Promise<RoundResult> {
  const { opts } = ctx;
  const tag = `${round}${state ? 's' : 'n'}`;
  const db = await ctx.database.create(`d${tag}`);
  let server: RunningServer | undefined;
  try {
    server = await startServer({
      kind: 'ours',
      script: ctx.build.serverMain,
      databaseUrl: db.url,
      keys: ctx.keys,
      tmp: ctx.tmp,
      instanceId: `bench-${process.pid}-d${tag}`,
      env: { DSS_STATE_ENABLED: state ? 'true' : 'false' },
      nodeArgs: ctx.profDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profDir}`, `--cpu-prof-name=ours-r${tag}.cpuprofile`] : [],
    });
    await connectDevices(ctx.deviceClients, server.port);
    const streamKey = `bench-r${tag}`;
    const { streamUrl } = await feederCall(ctx, { op: 'start', streamKey }, 'started', 30_000);
    const rule = await server.api('POST', '/v1/rules', {
      name: 'bench',
      match: { eventType: 'datapoint', propertyName: 'bench' },
      action: { deviceId: '{{dsn}}', componentId: 'bench', command: 'set', params: [{ name: 't', value: '{{value}}' }] },
    });
    if (rule.status !== 201) throw new Error(`POST /v1/rules: ${rule.status} ${JSON.stringify(rule.json)}`);
    const stream = await server.api('POST', '/v1/dss/streams', { name: 'bench', url: streamUrl, streamKey });
    if (stream.status !== 201) throw new Error(`POST /v1/dss/streams: ${stream.status} ${JSON.stringify(stream.json)}`);
    const streamId = (stream.json as { id: string }).id;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = await server.api('GET', `/v1/dss/streams/${streamId}`);
      if ((s.json as { status?: { connected?: boolean } }).status?.connected) break;
      if (Date.now() > deadline) throw new Error(`stream not connected within 30 s: ${JSON.stringify(s.json)}`);
      await sleep(200);
    }
    await sleep(1_000);

    const feed = (f: Omit<Feed, 'streamKey'>) => feederCall(ctx, { op: 'emit', streamKey, ...f }, 'emitted', f.deadlineMs + 30_000);
    const burst = { kind: 'burst' as const, chunk: 500, everyMs: 10 };
    const throughput = async (dsns: string[], total: number): Promise<Throughput> => {
      await listen(ctx.deviceClients, opts.ack, false);
      const dbCpu = await databaseCpu(db.url);
      const dbBefore = await dbCpu.sample();
      const cpuBefore = cpuMs(server!.server.pid);
      const sent = await feed({ dsns, total, mode: burst, deadlineMs: 120_000 });
      const got = await waitForReceipts(ctx.deviceClients, sent.sent, { quietMs: 10_000, timeoutMs: 300_000 });
      const cpu = cpuMs(server!.server.pid) - cpuBefore;
      const dbMs = (await dbCpu.sample()).since(dbBefore);
      await dbCpu.close();
      return {
        sent: sent.sent,
        received: got.count,
        perSec: (got.count / (got.lastMs - sent.firstMs)) * 1000,
        serverCpuUs: (cpu * 1000) / got.count,
        dbCpuUs: (dbMs * 1000) / got.count,
      };
    };

    await throughput(ctx.deviceIds, 2_000); // warm-up
    await listen(ctx.deviceClients, opts.ack, true);
    const sent = await feed({ dsns: ctx.deviceIds, total: opts.rate * opts.seconds, mode: { kind: 'open', rate: opts.rate }, deadlineMs: opts.seconds * 1000 + 30_000 });
    const got = await waitForReceipts(ctx.deviceClients, sent.sent, { latencies: true });
    const sorted = got.latencies.sort((a, b) => a - b);
    const many = await throughput(ctx.deviceIds, opts.total);
    const few = await throughput(ctx.deviceIds.slice(0, opts.few), opts.total);
    return {
      round,
      state,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? Number.NaN,
      latencySent: sent.sent,
      latencyReceived: got.count,
      many,
      few,
    };
  } finally {
    await resetDevices(ctx.deviceClients);
    // SIGTERM when profiling: node writes the --cpu-prof file on a clean exit only.
    if (server) await killChild(server.server.child, ctx.profDir ? 'SIGTERM' : 'SIGKILL', 15_000);
    await db.drop().catch((err) => log(`could not drop bench database: ${(err as Error).message}`));
    await sleep(500);
  }
}

function printSummary(results: RoundResult[], info: { devices: number; opts: Options; description: string }): void {
  const { opts } = info;
  const m = (f: (r: RoundResult) => number) => median(results.map(f));
  const p99 = m((r) => r.p99);
  const many = m((r) => r.many.perSec);
  const few = m((r) => r.few.perSec);
  const verdict = (ok: boolean, value: number) => (Number.isFinite(value) ? (ok ? 'met' : 'MISSED') : 'n/a');
  const header = [`DSS → rule → device, ${fmt(info.devices)} devices (${opts.ack ? 'acking' : 'not acking'}), median of ${opts.rounds}`, 'iot-websocket-server', 'target'];
  const rows = [
    [`event → device p50 / p99 at ${fmt(opts.rate)} events/s (open loop, ${opts.seconds} s)`, `${fmt(m((r) => r.p50), 1)} / ${fmt(p99, 1)} ms`, `p99 ≤ 50 ms (${verdict(p99 <= 50, p99)})`],
    [`sustained events/s through the rule, spread over ${fmt(info.devices)} devices`, fmt(many), `≥ 3,000/s (${verdict(many >= 3_000, many)})`],
    [`sustained events/s through the rule, over ${opts.few} devices`, fmt(few), `≥ 3,000/s (${verdict(few >= 3_000, few)})`],
    ['server CPU per event, many / few devices', `${fmt(m((r) => r.many.serverCpuUs))} / ${fmt(m((r) => r.few.serverCpuUs))} µs`, ''],
    ['PostgreSQL CPU per event, many / few devices', `${fmt(m((r) => r.many.dbCpuUs))} / ${fmt(m((r) => r.few.dbCpuUs))} µs`, ''],
  ];
  const { text, markdown } = renderTables(header, rows);
  process.stdout.write(`\n${text}\n\nMarkdown (${info.description}; ${os.cpus().length} cores, Node ${process.versions.node}):\n\n${markdown}\n`);
}
