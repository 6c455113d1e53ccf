/**
 * soak: `--minutes` (default 10) of mixed traffic on one instance: `--devices` acking
 * devices, a tenth more that disconnect and reconnect every 10 s, `--rate` POSTs/s to
 * all of them, DSS events through a rule at a tenth of the rate. The server's RSS is
 * sampled every 10 s after a full GC: the last third of the run may not hold more than
 * the middle third (the first third is warm-up) beyond 8 MiB or 10%. Accounting at the end.
 */
import { startDssSimulator } from '../../src/dss/simulator/simulator.js';
import { onCleanup } from '../../bench/lib/processes.js';
import { median } from '../../bench/lib/stats.js';
import { account } from '../lib/accounting.js';
import { sleep } from '../lib/context.js';
import type { Fleet } from '../lib/devices.js';
import { deliveryLatencies, p50p99 } from '../lib/latency.js';
import { startLoad } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

const KEY = '50a450a450a450a450a450a450a450a4';

export const soak: Scenario = {
  name: 'soak',
  about: '--minutes of connects, disconnects, actuations, acks and DSS events; RSS every 10 s must not grow after warm-up',
  quick: false,
  async run(ctx) {
    const sim = await startDssSimulator({ streamKeys: [KEY] });
    onCleanup(() => sim.close());
    const instance = await ctx.startInstance('a', { DSS_SUPERVISOR_INTERVAL_MS: '500' });
    const { api, origin, authorization } = instance.server;
    await api('POST', '/v1/dss/streams', { name: 'soak', url: sim.streamUrl, streamKey: KEY });
    await api('POST', '/v1/rules', { name: 'soak', match: { eventType: 'datapoint', oemModel: 'soak' }, action: { deviceId: '{{dsn}}', componentId: 'dss', command: 'set', params: [{ name: 'v', value: '{{value}}' }] } });
    const stable = deviceIds('chaos-dev', ctx.options.devices);
    const churnIds = deviceIds('chaos-churn', Math.max(1, Math.round(ctx.options.devices / 10)));
    const fleets: Fleet[] = [ctx.fleet(instance.wsUrl, stable)];
    await fleets[0]!.allAuthenticated(60_000);
    let churn = ctx.fleet(instance.wsUrl, churnIds);
    fleets.push(churn);

    const load = startLoad({ origin, authorization, deviceIds: [...stable, ...churnIds], rate: ctx.options.rate, timeoutMs: 30_000 });
    const samples: number[] = [];
    const end = Date.now() + ctx.options.minutes * 60_000;
    let events = 0;
    while (Date.now() < end) {
      const tickEnd = Math.min(end, Date.now() + 10_000);
      while (Date.now() < tickEnd) {
        sim.emit(KEY, { type: 'datapoint', dsn: stable[events++ % stable.length]!, oemModel: 'soak', property: 'p', value: String(events) });
        await sleep(Math.max(1, 10_000 / ctx.options.rate));
      }
      await churn.stop();
      churn = ctx.fleet(instance.wsUrl, churnIds);
      fleets.push(churn);
      process.kill(instance.pid, 'SIGUSR2'); // full GC in the server (bench hook)
      await sleep(500);
      samples.push(instance.rssKiB() / 1024);
      ctx.log(`  ${samples.length * 10} s: RSS ${samples.at(-1)!.toFixed(1)} MiB, ${load.outcomes.length} POSTs, ${events} DSS events`);
    }
    const outcomes = await load.stop();
    await churn.allAuthenticated(30_000).catch(() => undefined);

    const third = Math.max(1, Math.floor(samples.length / 3));
    const middle = median(samples.slice(third, 2 * third));
    const last = median(samples.slice(2 * third));
    ctx.figure('RSS samples, MiB', samples.map((s) => s.toFixed(0)).join(' '));
    ctx.figure('RSS median of the middle / last third, MiB', `${middle.toFixed(1)} / ${last.toFixed(1)}`);
    ctx.check('no RSS growth after warm-up (last third ≤ middle third + max(8 MiB, 10%))', last <= middle + Math.max(8, middle * 0.1), `${(last - middle).toFixed(1)} MiB`);
    ctx.figure('POSTs / DSS events / churn reconnects', `${outcomes.length} / ${events} / ${fleets.length - 2}`);
    ctx.figure('POST → device p50 / p99', p50p99(deliveryLatencies(outcomes, fleets)));
    const not202 = outcomes.filter((o) => o.status !== 202);
    ctx.check('every POST answered 202', not202.length === 0, not202.length ? `${not202.length}, e.g. ${not202[0]!.status} ${not202[0]!.body ?? ''}` : '');
    const dssCount = async () => (await ctx.db.pool.query<{ n: number }>(`select count(*)::int as n from actuations where source->>'kind' = 'dss'`)).rows[0]!.n;
    await ctx.within(10_000, async () => (await dssCount()) >= events);
    const made = await dssCount();
    ctx.check('every DSS event became an actuation', made >= events, `${made} of ${events}`);
    ctx.check('the instance is still running', !instance.exited(), instance.exitDescription());
    await account(ctx, { outcomes, fleets, drainMs: 30_000 });
  },
};
