/**
 * `npm run chaos -- <scenario> [options]`: break something under load, then account
 * for every actuation. Prints figures, one line per check, and one verdict line
 * (`chaos <scenario>: PASS ...` or `chaos <scenario>: FAIL: <reasons>`); exits 0 on
 * PASS, 1 on FAIL, 64 on bad arguments. Whatever happens, every process it started is
 * killed and every temp dir removed (bench/lib/processes.ts cleanup()).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitCleaningUp } from '../bench/lib/processes.js';
import { ChaosContext, type ChaosOptions } from './lib/context.js';
import { SCENARIOS } from './scenarios/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `usage: npm run chaos -- <scenario> [options]

scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(15)} ${s.about}${s.quick ? ' (CI)' : ''}`).join('\n')}

options:
  --devices N               acking devices (default: 200; storm: 5000; sigkill: 300)
  --rate N                  POSTs per second (default: 200)
  --outage-seconds N        length of the outage (default: 10)
  --minutes N               soak duration (default: 10)
  --database-timeout-ms N   DATABASE_TIMEOUT_MS given to the servers and the bound on a REST
                            answer during an outage, plus 1.5 s (default: 5000)
  --history N               growth: finished actuations in the history (sessions: N/2; default: 2000000)
  --server-main PATH        a built server's dist/main.js (migrations/ beside dist/) instead of building
  -h, --help`;

function bad(message: string): never {
  process.stderr.write(`chaos: ${message}\n\n${USAGE}\n`);
  process.exit(64);
}

function whole(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) bad(`--${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  return Number(raw);
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    strict: true,
    options: {
      devices: { type: 'string' },
      rate: { type: 'string' },
      'outage-seconds': { type: 'string' },
      minutes: { type: 'string' },
      'database-timeout-ms': { type: 'string' },
      history: { type: 'string' },
      'server-main': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
try {
  parsed = parse();
} catch (err) {
  bad((err as Error).message);
}
if (parsed.values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (parsed.positionals.length !== 1) bad(parsed.positionals.length === 0 ? 'name a scenario' : `one scenario at a time, got ${parsed.positionals.join(' ')}`);
const name = parsed.positionals[0]!;
const scenario = SCENARIOS.find((s) => s.name === name) ?? bad(`unknown scenario "${name}"`);
const defaults: Record<string, number> = { storm: 5_000, sigkill: 300 };
const v = parsed.values;
const options: ChaosOptions = {
  devices: whole('devices', v.devices, defaults[name] ?? 200, 1, 19_000),
  rate: whole('rate', v.rate, 200, 1, 5_000),
  outageSeconds: whole('outage-seconds', v['outage-seconds'], 10, 1, 600),
  minutes: whole('minutes', v.minutes, 10, 1, 1_440),
  databaseTimeoutMs: whole('database-timeout-ms', v['database-timeout-ms'], 5_000, 100, 600_000),
  history: whole('history', v.history, 2_000_000, 0, 100_000_000),
  serverMain: v['server-main'] === undefined ? undefined : path.resolve(v['server-main']),
};

const log = (line: string) => process.stdout.write(`${line}\n`);
const finish = exitCleaningUp('chaos');

log(`chaos ${name} ${JSON.stringify(options)}`);
const started = Date.now();
let ctx: ChaosContext | undefined;
let error: Error | undefined;
try {
  ctx = await ChaosContext.create(ROOT, options, log);
  await scenario.run(ctx);
} catch (err) {
  error = err as Error;
  process.stderr.write(`chaos ${name}: ${error.stack ?? error.message}\n`);
}
const failed = [...(ctx?.checks.filter((c) => !c.ok).map((c) => (c.detail ? `${c.name} (${c.detail.length > 120 ? `${c.detail.slice(0, 117)}...` : c.detail})` : c.name)) ?? []), ...(error ? [`could not finish: ${error.message.split('\n')[0]}`] : [])];
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (failed.length === 0) log(`chaos ${name}: PASS (${ctx!.checks.length} checks, ${seconds} s)`);
else log(`chaos ${name}: FAIL: ${failed.join('; ')} (${seconds} s)`);
await finish(failed.length === 0 ? 0 : 1);
