/**
 * worker-kill: one server with WORKERS=2 (a cluster primary and two workers on one
 * port). `--devices` acking devices connect through the port and land on both workers;
 * 3,000 actuations are posted to the same port at `--rate`; when a third are sent, one
 * worker is killed with SIGKILL. Its devices reconnect through the port (to the survivor,
 * or to the replacement the primary forks), and every actuation posted (answered 2xx)
 * must be delivered and acked: posted equals delivered. POSTs in flight on the killed
 * worker get no answer: their connection is reset, or (seen once, probably a connection the
 * primary was handing to the dying worker) stays open until the client's 30 s timeout. They are
 * counted, not failed, when sent within CUT_OFF_WINDOW_MS of the kill: the caller saw
 * no 2xx, and any of them committed before the kill is delivered too (the accounting's rule).
 */
import fs from 'node:fs';
import { account } from '../lib/accounting.js';
import { sentAll, startLoad } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

const TOTAL = 3_000;
/** POSTs sent this close to the kill may be on the killed worker's connections. */
const CUT_OFF_WINDOW_MS = 1_000;

/** The cluster primary's children (its workers), from /proc (Linux). */
function childPids(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export const workerKill: Scenario = {
  name: 'worker-kill',
  about: `SIGKILL one of two workers (WORKERS=2, one port) while ${TOTAL.toLocaleString('en-US')} actuations are posted to the port`,
  quick: true,
  async run(ctx) {
    const server = await ctx.startInstance('cluster', { WORKERS: '2' });
    const workerIds = [`${server.id}-w0`, `${server.id}-w1`];
    await ctx.waitFor('both workers registered', 60_000, async () => {
      const { rows } = await ctx.db.pool.query(`select id from instances where id = any($1)`, [workerIds]);
      return rows.length === 2 && childPids(server.pid).length === 2;
    });
    const ids = deviceIds('chaos-dev', ctx.options.devices);
    const fleet = ctx.fleet(server.wsUrl, ids);
    ctx.figure(`${ids.length} devices authenticated through the port in, ms`, await fleet.allAuthenticated(60_000));
    const spread = async () =>
      (await ctx.db.pool.query<{ instance_id: string; n: number }>(`select instance_id, count(*)::int as n from device_sessions where disconnected_at is null group by 1 order by 1`)).rows;
    const before = await spread();
    ctx.figure('devices per worker before the kill', JSON.stringify(Object.fromEntries(before.map((r) => [r.instance_id, r.n]))));
    ctx.check('devices landed on both workers', ids.length < 2 || before.length === 2, JSON.stringify(before));

    const load = startLoad({ origin: server.server.origin, authorization: server.server.authorization, deviceIds: ids, rate: ctx.options.rate, total: TOTAL, timeoutMs: 30_000 });
    await sentAll(load, TOTAL / 3, 60_000);
    const [victim, survivor] = childPids(server.pid);
    process.kill(victim!, 'SIGKILL');
    const killedAt = Date.now();
    ctx.log(`worker ${victim} killed after ${load.outcomes.length} POSTs`);
    // First the killed worker's sockets are seen closed, then all are open again.
    const noticed = await ctx.within(10_000, () => fleet.openIds().size < ids.length);
    ctx.check('the killed worker\'s devices lost their sockets', noticed !== undefined);
    const back = await ctx.within(60_000, () => fleet.openIds().size === ids.length);
    ctx.figure('all devices back after, ms', back ?? 'not within 60000');
    ctx.check('every device reconnected within 60 s', back !== undefined, `${fleet.openIds().size} of ${ids.length}`);
    const replaced = await ctx.within(60_000, () => {
      const now = childPids(server.pid);
      return now.length === 2 && now.includes(survivor!) && !now.includes(victim!);
    });
    ctx.figure('killed worker replaced by the primary after, ms', replaced ?? 'not within 60000');
    ctx.check('the primary forked a replacement worker', replaced !== undefined, JSON.stringify(childPids(server.pid)));
    ctx.check('the primary kept running', !server.exited(), server.exitDescription());

    await sentAll(load, TOTAL, 120_000);
    const outcomes = await load.stop();
    const posted = outcomes.filter((o) => o.status === 202);
    // No answer at all (reset, or probably a connection handed to the worker as it died, which then hangs
    // until the client's timeout) is the caller's to retry; it is accepted only around the kill.
    const unanswered = outcomes.filter((o) => o.status === 'error' || o.status === 'timeout');
    const cutOff = unanswered.filter((o) => Math.abs(o.sentAt - killedAt) <= CUT_OFF_WINDOW_MS);
    const other = outcomes.filter((o) => o.status !== 202 && !cutOff.includes(o));
    ctx.figure('POSTs cut off by the kill (reset / hung until the 30 s client timeout)', `${cutOff.filter((o) => o.status === 'error').length} / ${cutOff.filter((o) => o.status === 'timeout').length}`);
    ctx.check('every other POST answered 202', other.length === 0, other.length ? `${other.length}, e.g. ${other[0]!.status} ${other[0]!.sentAt - killedAt} ms after the kill ${other[0]!.body ?? ''}` : '');
    ctx.figure('device sockets closed (by close code)', JSON.stringify(Object.fromEntries(fleet.disconnects)));
    ctx.figure('seconds from the kill to the end of the load', (Date.now() - killedAt) / 1000);
    await account(ctx, { outcomes, fleets: [fleet], drainMs: 30_000 });
    const { rows } = await ctx.db.pool.query<{ n: number }>(`select count(*)::int as n from actuations where id = any($1) and status = 'acked'`, [posted.map((o) => o.id!)]);
    ctx.figure('posted (202) / delivered (acked)', `${posted.length} / ${rows[0]!.n}`);
    ctx.check('posted equals delivered', rows[0]!.n === posted.length, `${posted.length} posted, ${rows[0]!.n} delivered`);
  },
};
