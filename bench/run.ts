/**
 * `npm run bench -- <subcommand> [options]`: the project's benchmarks.
 *
 *   connect   N devices connect and authenticate against the real server and a
 *             bare `ws` server; connect rate and memory per device, with ratios.
 *
 *   actuations  REST POST -> device: actuations/s (single and bulk), p50/p99 at a
 *             fixed rate, across instances; ratios to a bare express + ws server.
 *
 *   dss       DSS simulator events -> rule -> device: latency at a fixed rate and
 *             sustained events/s over many and over few devices.
 *
 *   growth    POST -> device latency on a database filled with history (finished
 *             actuations, closed sessions) against an empty one, alternated.
 *
 *   jobs      a job over N acking devices (no rate limit) against the bulk endpoint
 *             in the same run; a paced job's release rate per 10 s window.
 *   ceilings  what one PostgreSQL sustains (connects, single, bulk, acks, DSS events) with 1, 2
 *             and 4 server processes on it, and which resource runs out first.
 *
 *   webhooks  events -> one webhook endpoint: latency at a fixed rate, deliveries/s
 *             of one endpoint, server and PostgreSQL CPU per delivery.
 *
 * Later benches are added to SUBCOMMANDS. Whatever happens,
 * children are killed and temp dirs removed before the process exits.
 */
import { actuationsBench } from './actuations.js';
import { ceilingsBench } from './ceilings.js';
import { connectBench } from './connect.js';
import { dssBench } from './dss.js';
import { growthBench } from './growth.js';
import { jobsBench } from './jobs.js';
import { webhooksBench } from './webhooks.js';
import { exitCleaningUp } from './lib/processes.js';

const SUBCOMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; about: string }> = {
  connect: { run: connectBench, about: 'connect+auth rate and memory per device vs a bare ws server' },
  actuations: { run: actuationsBench, about: 'REST POST -> device: actuations/s, latency at a fixed rate, across instances, bulk; vs bare express + ws' },
  dss: { run: dssBench, about: 'DSS event -> rule -> device: latency at a fixed rate, sustained events/s over many and few devices' },
  jobs: { run: jobsBench, about: 'a job over N acking devices vs the bulk endpoint; a paced job\'s rate per 10 s window; RSS while a job runs' },
  webhooks: { run: webhooksBench, about: 'events -> one webhook endpoint: latency at a fixed rate, deliveries/s of one endpoint, CPU per delivery' },
  ceilings: { run: ceilingsBench, about: 'one PostgreSQL with 1, 2, 4 server processes: connects, single, bulk, acks, DSS events/s; CPU, WAL, lock waits, NOTIFY' },
  growth: { run: growthBench, about: 'POST -> device p99 with 2M finished actuations and 1M closed sessions vs an empty database, alternated' },
};

function usage(): string {
  return ['usage: npm run bench -- <subcommand> [options]   (--help after a subcommand for its options)', '', ...Object.entries(SUBCOMMANDS).map(([name, s]) => `  ${name.padEnd(10)} ${s.about}`)].join('\n');
}

const exit = exitCleaningUp('bench');
process.on('uncaughtException', (err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  void exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`bench: ${(err as Error)?.stack ?? err}\n`);
  void exit(1);
});

const [name, ...rest] = process.argv.slice(2);
const subcommand = name === undefined ? undefined : SUBCOMMANDS[name];
if (!subcommand) {
  process.stderr.write(`${usage()}\n`);
  await exit(name === undefined || name === '--help' || name === '-h' ? 0 : 2);
} else {
  let code = 1;
  try {
    code = await subcommand.run(rest);
  } catch (err) {
    process.stderr.write(`bench ${name}: ${(err as Error).message}\n`);
  }
  await exit(code);
}
