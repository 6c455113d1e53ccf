/**
 * stalled-reader: one device authenticates and then stops reading (its socket paused,
 * so the kernel buffers fill and the server's writes back up), while 10,000 actuations
 * of ~2 KiB (20 MiB, four times what the kernel's buffers and the 1 MiB bound can take) are posted to it in bulk and the other devices get `--rate` POSTs/s.
 * The server's memory must stay bounded (it holds at most DEVICE_MAX_BUFFERED_BYTES,
 * 1 MiB, for the device), the stalled device's actuations stay `queued`, and every
 * other device gets and acks everything.
 */
import { account } from '../lib/accounting.js';
import { sleep } from '../lib/context.js';
import { deliveryLatencies, p50p99 } from '../lib/latency.js';
import { makeRestClient, startLoad, type Outcome } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import { connectRawDevice } from '../lib/raw-device.js';
import type { Scenario } from './scenario.js';

const STALLED = 'chaos-stalled';
// 10,000, not more: the CI run must fit in 60 s with set-up (20,000 took 60.2 s on CI).
const TOTAL = 10_000;
const BULK = 200;
const PAYLOAD = 'x'.repeat(2_048);
/** What the server may still hold after a full GC: the device's 1 MiB plus allocator slack from the bulk POSTs. */
const RSS_BOUND_MIB = 32;

export const stalledReader: Scenario = {
  name: 'stalled-reader',
  about: `a device stops reading while ${TOTAL.toLocaleString('en-US')} actuations of 2 KiB are posted to it; others keep going`,
  quick: true,
  async run(ctx) {
    const instance = await ctx.startInstance('a', { MAX_QUEUED_PER_DEVICE: String(TOTAL * 2) });
    const ids = deviceIds('chaos-dev', ctx.options.devices);
    const fleet = ctx.fleet(instance.wsUrl, ids);
    await fleet.allAuthenticated(60_000);
    const stalled = connectRawDevice(instance.wsUrl, STALLED, ctx.token(STALLED));
    if (!ctx.check('the stalled device authenticated', (await stalled.answer) === 200)) return;
    stalled.ws.pause();
    const gcRss = async () => {
      process.kill(instance.pid, 'SIGUSR2'); // full GC in the server (bench hook), so RSS is what is held
      await sleep(500);
      return instance.rssKiB() / 1024;
    };
    const baseline = await gcRss();
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, instance.rssKiB() / 1024)), 200);

    const load = startLoad({ origin: instance.server.origin, authorization: instance.server.authorization, deviceIds: ids, rate: ctx.options.rate, timeoutMs: 30_000 });
    const bulk: Outcome[] = [];
    const client = makeRestClient(instance.server.origin, 4);
    for (let sent = 0; sent < TOTAL; sent += BULK) {
      const items = Array.from({ length: BULK }, (_, i) => ({ deviceId: STALLED, componentId: 'chaos', command: 'fill', params: [{ name: 'n', value: `${sent + i} ${PAYLOAD}` }] }));
      const sentAt = Date.now();
      const res = await client.request({ method: 'POST', path: '/v1/actuations', headers: { 'content-type': 'application/json', authorization: instance.server.authorization }, body: JSON.stringify(items) });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`bulk POST: ${res.statusCode} ${text.slice(0, 200)}`);
      for (const r of (JSON.parse(text) as { results: { status: number; actuation?: { id: string; seq: number } }[] }).results) {
        bulk.push({ deviceId: STALLED, sentAt, answeredAt: Date.now(), endedAt: Date.now(), status: r.status, id: r.actuation?.id, seq: r.actuation?.seq });
      }
    }
    await client.close();
    await sleep(5_000);
    clearInterval(sampler);
    const outcomes = await load.stop();
    const after = await gcRss();

    const { rows } = await ctx.db.pool.query<{ status: string; n: number }>(`select status, count(*)::int as n from actuations where device_id = $1 group by status`, [STALLED]);
    const byStatus = Object.fromEntries(rows.map((r) => [r.status, r.n]));
    ctx.figure(`stalled device: ${TOTAL} posted (2xx: ${bulk.filter((o) => o.id).length}), by status`, JSON.stringify(byStatus));
    ctx.figure('stalled device: actuation frames that reached its paused socket', stalled.actuations.length);
    ctx.figure('server RSS baseline / peak / after GC, MiB', `${baseline.toFixed(1)} / ${peak.toFixed(1)} / ${after.toFixed(1)}`);
    ctx.check(`server memory bounded (RSS after GC ≤ baseline + ${RSS_BOUND_MIB} MiB)`, after - baseline <= RSS_BOUND_MIB, `+${(after - baseline).toFixed(1)} MiB`);
    ctx.check('most of the stalled device’s actuations stay queued', (byStatus.queued ?? 0) >= TOTAL / 2, `${byStatus.queued ?? 0} queued of ${TOTAL}`);
    ctx.check('the stalled device’s socket is still open', stalled.ws.readyState === stalled.ws.OPEN);
    ctx.figure('other devices: POST → device p50 / p99', p50p99(deliveryLatencies(outcomes, [fleet])));
    const not202 = outcomes.filter((o) => o.status !== 202);
    ctx.check('every POST to the other devices answered 202', not202.length === 0, not202.length ? `${not202.length}, e.g. ${not202[0]!.status}` : '');
    stalled.ws.terminate();
    await account(ctx, {
      outcomes: [...outcomes, ...bulk],
      fleets: [fleet],
      pendingReason: (row) => (row.device_id === STALLED ? 'its device stopped reading' : undefined),
    });
  },
};
