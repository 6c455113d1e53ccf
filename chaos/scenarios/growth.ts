/**
 * growth: does history slow the hot path? One instance on a database holding
 * `--history` finished actuations and half as many closed sessions, one on an empty
 * database, `--devices` acking devices on each; POST → device p99 at `--rate` in
 * alternating 20 s windows (empty, filled, three times). The filled side's median p99
 * must stay within 1.5× of the empty side's (issue 9 asks this at --rate 500).
 *
 * The history comes from `fillHistory` of bench/lib/fill-history.ts, the growth bench's
 * fill: finished actuations and closed sessions, then CHECKPOINT and VACUUM ANALYZE.
 */
import { fillHistory } from '../../bench/lib/fill-history.js';
import { median, percentile } from '../../bench/lib/stats.js';
import { account } from '../lib/accounting.js';
import { deliveryLatencies } from '../lib/latency.js';
import { startLoad, type Outcome } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

const WINDOW_MS = 20_000;
const ROUNDS = 3;

export const growth: Scenario = {
  name: 'growth',
  about: 'POST → device p99 with --history finished actuations (and half as many sessions) vs an empty database',
  quick: false,
  async run(ctx) {
    const emptyDb = await ctx.database('empty');
    const [filled, empty] = await Promise.all([ctx.startInstance('filled'), ctx.startInstance('empty', {}, emptyDb)]);
    const started = Date.now();
    await fillHistory(ctx.db.pool, { actuations: ctx.options.history, sessions: Math.floor(ctx.options.history / 2) });
    const size = (await ctx.db.pool.query<{ size: string }>(`select pg_size_pretty(pg_database_size(current_database())) as size`)).rows[0]!.size;
    ctx.figure(`filled ${ctx.options.history} actuations + ${Math.floor(ctx.options.history / 2)} sessions in, s (database size)`, `${((Date.now() - started) / 1000).toFixed(0)} (${size})`);

    // A prefix of its own, so that no history row is taken for one of these devices' actuations.
    const ids = deviceIds('chaos-growth', ctx.options.devices);
    const sides = [
      { name: 'empty', instance: empty, fleet: ctx.fleet(empty.wsUrl, ids), p99: [] as number[], outcomes: [] as Outcome[] },
      { name: 'filled', instance: filled, fleet: ctx.fleet(filled.wsUrl, ids), p99: [] as number[], outcomes: [] as Outcome[] },
    ];
    await Promise.all(sides.map((s) => s.fleet.allAuthenticated(60_000)));
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of sides) {
        const { origin, authorization } = side.instance.server;
        const load = startLoad({ origin, authorization, deviceIds: ids, rate: ctx.options.rate, timeoutMs: 30_000 });
        await new Promise((r) => setTimeout(r, WINDOW_MS));
        const outcomes = await load.stop();
        await ctx.within(5_000, () => outcomes.every((o) => !o.id || side.fleet.received.has(o.id)));
        const p99 = percentile(deliveryLatencies(outcomes, [side.fleet]), 99);
        side.p99.push(p99);
        side.outcomes.push(...outcomes);
        ctx.log(`  round ${round + 1}, ${side.name}: p99 ${p99} ms over ${outcomes.length} POSTs`);
      }
    }
    const [e, f] = sides.map((s) => median(s.p99)) as [number, number];
    ctx.figure('POST → device p99, median of rounds: empty / filled, ms', `${e} / ${f}`);
    ctx.check('with history, p99 within 1.5× of the empty database', f <= 1.5 * e, `${(f / e).toFixed(2)}×`);
    await sides[0]!.fleet.stop();
    await account(ctx, { outcomes: sides[1]!.outcomes, fleets: [sides[1]!.fleet] });
  },
};
