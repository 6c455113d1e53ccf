/**
 * listen-loss: instance B's LISTEN connection goes silent (its proxied socket is
 * blackholed for good: the server is not told) while devices on B get actuations
 * posted to instance A, which reach B only by NOTIFY or B's poll. B must notice,
 * open a new LISTEN connection, and pick up what was NOTIFYed meanwhile.
 * The LISTEN connection is found by application_name in pg_stat_activity and mapped to
 * B's proxy socket by its client port.
 */
import { account, restFigures } from '../lib/accounting.js';
import { sleep } from '../lib/context.js';
import { deliveryLatencies, p50p99 } from '../lib/latency.js';
import { startLoad } from '../lib/load.js';
import { deviceIds, hangLimitMs, RECOVERY_MS, WARMUP_MS } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

export const listenLoss: Scenario = {
  name: 'listen-loss',
  about: "instance B's LISTEN connection is lost silently while actuations for its devices are posted to A",
  quick: true,
  async run(ctx) {
    const [a, b] = await Promise.all([ctx.startInstance('a'), ctx.startInstance('b')]);
    const ids = deviceIds('chaos-dev', ctx.options.devices);
    const fleet = ctx.fleet(b.wsUrl, ids);
    await fleet.allAuthenticated(60_000);
    const listenPorts = async () => {
      const { rows } = await ctx.db.pool.query<{ port: number }>(`select client_port as port from pg_stat_activity where application_name like 'iot-websocket-server listen%'`);
      const ports = new Set(rows.map((r) => r.port));
      return b.proxy.connections().filter((c) => c.upstreamLocalPort !== undefined && ports.has(c.upstreamLocalPort));
    };
    const limit = hangLimitMs(ctx);
    const load = startLoad({ origin: a.server.origin, authorization: a.server.authorization, deviceIds: ids, rate: ctx.options.rate, timeoutMs: limit + 5_000 });
    await sleep(WARMUP_MS);
    const before = await listenPorts();
    if (!ctx.check("found B's LISTEN connection", before.length === 1, `${before.length}`)) throw new Error('no LISTEN connection to blackhole');
    const lost = before[0]!;
    const window = { from: Date.now(), to: 0 };
    lost.blackhole();
    ctx.log('LISTEN connection blackholed');
    // How long detection may take is the server's choice (keepalive, a probe query): allow the outage length plus two timeouts.
    const bound = ctx.options.outageSeconds * 1_000 + 2 * ctx.options.databaseTimeoutMs;
    const replacedMs = await ctx.within(bound, async () => (await listenPorts()).some((c) => c !== lost));
    window.to = Date.now();
    ctx.figure('LISTEN connection replaced after, ms', replacedMs ?? `not within ${bound}`);
    ctx.check(`B opened a new LISTEN connection within ${bound} ms`, replacedMs !== undefined);
    await sleep(RECOVERY_MS);
    const outcomes = await load.stop();

    restFigures(ctx, outcomes, window, limit);
    await account(ctx, { outcomes, fleets: [fleet] });
    // After the accounting's drain, so that what the poll delivers late is counted.
    ctx.figure('POST to A → device on B, before the loss (p50 / p99)', p50p99(deliveryLatencies(outcomes, [fleet], 0, window.from)));
    ctx.figure('  while the LISTEN connection was lost', p50p99(deliveryLatencies(outcomes, [fleet], window.from, window.to)));
    const after = deliveryLatencies(outcomes, [fleet], window.to + 1_000);
    ctx.figure('  from 1 s after it was replaced', p50p99(after));
    const p50 = after.length ? after[Math.ceil(after.length * 0.5) - 1]! : Number.NaN;
    // The poll behind NOTIFY (DISPATCH_POLL_MS, 5 s) alone gives a median near 2.5 s: under 1 s means NOTIFY works again.
    ctx.check('after the replacement, delivery is NOTIFY-fast again (median < 1 s)', p50 < 1_000, replacedMs === undefined ? 'never replaced' : `${p50} ms`);
  },
};
