/**
 * The frame of the database-outage scenarios (db-refuse, db-blackhole, db-slow,
 * db-restart, and with two instances listen-loss): one instance, `--devices` acking
 * devices, `--rate` POSTs/s; 3 s of warm-up, the outage for `--outage-seconds`, 5 s
 * after it; /readyz sampled every 250 ms throughout; then the REST figures and the
 * accounting. A scenario file says only how its outage begins and ends.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { account, restFigures } from './accounting.js';
import { sleep, type ChaosContext, type Instance } from './context.js';
import { startLoad } from './load.js';

export interface Outage {
  /** Starts the outage on `instance`; resolves with the function that ends it. */
  begin(ctx: ChaosContext, instance: Instance): Promise<() => Promise<void>>;
  /** /readyz must say "not ready" at some point during the outage. */
  expectNotReady: boolean;
}

export const WARMUP_MS = 3_000;
export const RECOVERY_MS = 5_000;

export function deviceIds(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);
}

/** The bound on any REST answer during an outage: DATABASE_TIMEOUT_MS plus 1.5 s for a loaded machine. */
export function hangLimitMs(ctx: ChaosContext): number {
  return ctx.options.databaseTimeoutMs + 1_500;
}

export async function runDatabaseOutage(ctx: ChaosContext, outage: Outage): Promise<void> {
  const { devices, rate, outageSeconds } = ctx.options;
  const instance = await ctx.startInstance('a');
  const ids = deviceIds('chaos-dev', devices);
  const fleet = ctx.fleet(instance.wsUrl, ids);
  ctx.figure(`${devices} devices authenticated in, ms`, await fleet.allAuthenticated(60_000));

  const limit = hangLimitMs(ctx);
  // How late timers ran, here and in the server: a "hung" call on a saturated machine
  // may be the scheduler's doing, not the server's (the figures say which).
  const toolLag = monitorEventLoopDelay({ resolution: 20 });
  toolLag.enable();
  await serverLagMaxMs(instance); // the server's maximum is over its last scrape: start afresh
  const load = startLoad({ origin: instance.server.origin, authorization: instance.server.authorization, deviceIds: ids, rate, timeoutMs: limit + 5_000 });
  const readyz = sampleReadyz(instance.server.origin, limit);
  await sleep(WARMUP_MS);
  const warm = load.outcomes.filter((o) => o.status === 202).length;
  if (!ctx.check('warm-up: POSTs answered 202 before the outage', warm > 0, `${warm}`)) throw new Error('the server did not work before the outage');

  const window = { from: Date.now(), to: 0 };
  ctx.log(`outage: ${outageSeconds} s`);
  const end = await outage.begin(ctx, instance);
  await sleep(outageSeconds * 1_000);
  await end();
  window.to = Date.now();
  ctx.log('outage over');
  await sleep(RECOVERY_MS);
  const outcomes = await load.stop();
  const samples = await readyz.stop();

  toolLag.disable();
  ctx.figure('event-loop delay max, chaos tool / server, ms', `${Math.round(toolLag.max / 1e6)} / ${(await serverLagMaxMs(instance)) ?? 'unknown'}`);
  restFigures(ctx, outcomes, window, limit);
  const during = samples.filter((s) => s.at >= window.from && s.at <= window.to);
  const firstReady = samples.find((s) => s.at >= window.to && s.status === 200);
  ctx.figure('/readyz during the outage: 200 / not ready / no answer', `${during.filter((s) => s.status === 200).length} / ${during.filter((s) => typeof s.status === 'number' && s.status !== 200).length} / ${during.filter((s) => s.status === 'timeout').length}`);
  // Any "not ready" answered while the database was out counts, also that of a probe sent just
  // before it began: with each probe bounded by DATABASE_TIMEOUT_MS, a loaded machine may start
  // only one probe inside the window, late enough that it reaches the server after the outage.
  const notReady = samples.filter((s) => typeof s.status === 'number' && s.status >= 500 && s.doneAt >= window.from && s.at <= window.to);
  if (outage.expectNotReady) ctx.check('/readyz said not ready during the outage', notReady.length > 0, `${notReady.length} answers`);
  ctx.check('/readyz ready within 5 s of the outage end', firstReady !== undefined && firstReady.at - window.to <= 5_000, firstReady ? `${firstReady.at - window.to} ms` : 'never');
  ctx.figure('device sockets closed (by close code)', JSON.stringify(Object.fromEntries(fleet.disconnects)));
  ctx.check('the instance is still running', !instance.exited(), instance.exitDescription());
  await account(ctx, { outcomes, fleets: [fleet] });
}

export function sampleReadyz(origin: string, timeoutMs: number) {
  const samples: { at: number; doneAt: number; status: number | 'timeout' }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const at = Date.now();
      const status = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(timeoutMs) }).then(
        async (r) => (await r.arrayBuffer(), r.status),
        () => 'timeout' as const,
      );
      samples.push({ at, doneAt: Date.now(), status });
      await sleep(250);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/** The server's largest event-loop delay since its previous scrape (prom-client's nodejs_eventloop_lag_max_seconds), in ms. */
async function serverLagMaxMs(instance: Instance): Promise<number | undefined> {
  const res = await fetch(`${instance.server.origin}/metrics`, { headers: { authorization: instance.server.authorization }, signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
  const text = res?.ok ? await res.text() : '';
  const match = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(text);
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}
