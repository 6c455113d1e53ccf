/**
 * storm: `--devices` (default 5,000) devices connect at once, then all close at once.
 * All must authenticate, the instance must not open more database connections than
 * its pool (DATABASE_POOL_SIZE, 10) plus the LISTEN one, and no session row may stay
 * open once the sockets are closed.
 */
import { checkSessions } from '../lib/accounting.js';
import { deviceIds } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

const POOL_SIZE = 10;

export const storm: Scenario = {
  name: 'storm',
  about: '5,000 devices connect at once, then all close at once',
  quick: false,
  async run(ctx) {
    const instance = await ctx.startInstance('a', { DATABASE_POOL_SIZE: String(POOL_SIZE) });
    let maxConnections = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await ctx.db.pool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'iot-websocket-server%'`);
        maxConnections = Math.max(maxConnections, rows[0]!.n);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const ids = deviceIds('chaos-storm', ctx.options.devices);
    const fleet = ctx.fleet(instance.wsUrl, ids, 0);
    const ms = await ctx.within(120_000, () => fleet.openIds().size === ids.length);
    ctx.figure(`${ids.length} devices authenticated in, ms`, ms ?? `not within 120000 (${fleet.openIds().size})`);
    ctx.check('every device authenticated', ms !== undefined, `${fleet.openIds().size} of ${ids.length}`);
    ctx.figure('authentications (reconnects after a refusal count again)', fleet.authentications());
    ctx.figure('sockets closed before authenticating or after (by close code)', JSON.stringify(Object.fromEntries(fleet.disconnects)));
    const closedAt = Date.now();
    await checkSessions(ctx, [fleet], 30_000);
    ctx.figure('all sockets closed and session rows closed in, ms', Date.now() - closedAt);
    sampling = false;
    await sampler;
    ctx.figure('most database connections of the instance at once', maxConnections);
    ctx.check(`at most ${POOL_SIZE + 1} database connections (pool + LISTEN)`, maxConnections <= POOL_SIZE + 1, `${maxConnections}`);
    ctx.check('the instance is still running', !instance.exited(), instance.exitDescription());
  },
};
