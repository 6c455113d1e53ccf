/**
 * sigkill: two instances; `--devices` (default 300) acking devices reach B through a
 * front proxy (a load balancer); 3,000 actuations are posted to A at `--rate`; when a
 * third are sent, B is killed with SIGKILL and the front proxy moves to A, so the
 * devices reconnect there. Every actuation must end acked, none re-sent after its ack
 * was recorded, and A's REST answers are not disturbed.
 */
import { account } from '../lib/accounting.js';
import { sentAll, startLoad } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import { startChaosProxy } from '../lib/proxy.js';
import { onCleanup } from '../../bench/lib/processes.js';
import type { Scenario } from './scenario.js';

const TOTAL = 3_000;

export const sigkill: Scenario = {
  name: 'sigkill',
  about: `SIGKILL the instance holding the devices while ${TOTAL.toLocaleString('en-US')} actuations are posted to the other`,
  quick: true,
  async run(ctx) {
    const [a, b] = await Promise.all([ctx.startInstance('a'), ctx.startInstance('b')]);
    const front = await startChaosProxy({ host: '127.0.0.1', port: b.server.port });
    onCleanup(() => front.close());
    const ids = deviceIds('chaos-dev', ctx.options.devices);
    const fleet = ctx.fleet(`ws://127.0.0.1:${front.port}/`, ids);
    ctx.figure(`${ids.length} devices authenticated on B in, ms`, await fleet.allAuthenticated(60_000));

    const load = startLoad({ origin: a.server.origin, authorization: a.server.authorization, deviceIds: ids, rate: ctx.options.rate, total: TOTAL, timeoutMs: 30_000 });
    await sentAll(load, TOTAL / 3, 60_000);
    front.retarget({ host: '127.0.0.1', port: a.server.port });
    b.server.server.child.kill('SIGKILL');
    const killedAt = Date.now();
    ctx.log(`B killed after ${load.outcomes.length} POSTs`);
    const back = await ctx.within(60_000, () => fleet.openIds().size === ids.length && front.connections().every((c) => c.upstream.remotePort === a.server.port));
    ctx.figure('all devices back (on A) after, ms', back ?? 'not within 60000');
    ctx.check('every device reconnected to A within 60 s', back !== undefined, `${fleet.openIds().size} of ${ids.length}`);
    await sentAll(load, TOTAL, 120_000);
    const outcomes = await load.stop();
    const not202 = outcomes.filter((o) => o.status !== 202);
    ctx.check(`all ${TOTAL} POSTs to A answered 202`, not202.length === 0, not202.length ? `${not202.length}, e.g. ${not202[0]!.status} ${not202[0]!.body ?? ''}` : '');
    ctx.figure('device sockets closed (by close code)', JSON.stringify(Object.fromEntries(fleet.disconnects)));
    ctx.figure('seconds from the kill to the end of the load', (Date.now() - killedAt) / 1000);
    await account(ctx, { outcomes, fleets: [fleet], drainMs: 30_000 });
  },
};
