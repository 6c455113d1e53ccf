/**
 * poison: valid traffic (acking devices, `--rate` POSTs/s, bulk POSTs, DSS events
 * through a rule) with, mixed in, input the database would refuse: U+0000 and lone
 * surrogates in REST bodies and paths, a bad item inside every bulk POST, device ids
 * that cannot be stored, acks whose reason cannot be stored, and DSS events whose dsn,
 * property or value cannot be stored. Every valid request must succeed and every
 * valid actuation end acked; bad ones get documented 4xx (REST) or 401 + close
 * 1003/1008 (devices), never 500 and never close 1011; nothing else is disturbed.
 */
import { startDssSimulator } from '../../src/dss/simulator/simulator.js';
import { onCleanup } from '../../bench/lib/processes.js';
import { account } from '../lib/accounting.js';
import { sleep } from '../lib/context.js';
import { makeRestClient, startLoad, type Outcome } from '../lib/load.js';
import { deviceIds } from '../lib/outage.js';
import { connectRawDevice, type RawDevice } from '../lib/raw-device.js';
import type { Scenario } from './scenario.js';

const NUL = '\u0000';
const LONE = '\ud800';
const KEY = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const valid = (n: number) => ({ componentId: 'chaos', command: 'set', params: [{ name: 'n', value: String(n) }] });
/** Bad REST calls: [label, method, path, body]. Bodies go through JSON.stringify, which escapes U+0000 and lone surrogates. */
const BAD_REST: [string, string, string, unknown][] = [
  ['U+0000 in componentId', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), componentId: `a${NUL}b` }],
  ['lone surrogate in command', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), command: `x${LONE}` }],
  ['U+0000 in a param value', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), params: [{ name: 'n', value: NUL }] }],
  ['lone surrogate in a param name', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), params: [{ name: '\udfff', value: '1' }] }],
  ['U+0000 in accountId', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), accountId: NUL }],
  ['U+0000 in collapseKey', 'POST', '/v1/devices/chaos-dev-1/actuations', { ...valid(0), collapseKey: `k${NUL}` }],
  ['U+0000 in the device id (path)', 'POST', '/v1/devices/bad%00id/actuations', valid(0)],
  ['invalid UTF-8 in the device id (path)', 'POST', '/v1/devices/%ED%A0%80/actuations', valid(0)],
  ['U+0000 in an actuation id (path)', 'GET', '/v1/actuations/%00', undefined],
  ['U+0000 in a device id (GET)', 'GET', '/v1/devices/a%00b', undefined],
  ['U+0000 in a rule name', 'POST', '/v1/rules', { name: NUL, match: { eventType: 'datapoint' }, action: { deviceId: 'x', componentId: 'c', command: 'c', params: [] } }],
];

export const poison: Scenario = {
  name: 'poison',
  about: 'valid traffic with U+0000, lone surrogates and unstorable ids mixed into REST, bulk, acks, device ids and DSS events',
  quick: true,
  async run(ctx) {
    const sim = await startDssSimulator({ streamKeys: [KEY] });
    onCleanup(() => sim.close());
    const instance = await ctx.startInstance('a', { DSS_SUPERVISOR_INTERVAL_MS: '500' });
    const { api, origin, authorization } = instance.server;
    const ids = deviceIds('chaos-dev', ctx.options.devices);
    const fleet = ctx.fleet(instance.wsUrl, ids);
    await fleet.allAuthenticated(60_000);
    const stream = await api('POST', '/v1/dss/streams', { name: 'chaos', url: sim.streamUrl, streamKey: KEY });
    const rule = await api('POST', '/v1/rules', { name: 'chaos', match: { eventType: 'datapoint', oemModel: 'chaos-model' }, action: { deviceId: '{{dsn}}', componentId: 'dss', command: 'set', params: [{ name: 'v', value: '{{value}}' }] } });
    if (!ctx.check('DSS stream and rule created', stream.status === 201 && rule.status === 201, `${stream.status} ${rule.status}`)) return;
    const streamId = (stream.json as { id: string }).id;
    const connected = async () => ((await api('GET', `/v1/dss/streams/${streamId}`)).json as { status?: { connected?: boolean } }).status?.connected === true;
    await ctx.waitFor('DSS stream connected', 30_000, connected);

    // Devices that cannot be stored, and rogue devices acking with reasons that cannot be stored.
    const badIds = [`chaos-bad${NUL}id`, `${LONE}chaos`, `chaos${NUL}`];
    const badDevices = badIds.map((id) => connectRawDevice(instance.wsUrl, id, ctx.token(id)));
    const rogueIds = deviceIds('chaos-rogue', 5);
    let bad = 0;
    const rogueAck = (d: RawDevice, m: { id: string }) => d.send({ type: 'ack', id: m.id, statusCode: 200, reasonPhrase: bad++ % 2 ? `ok${NUL}` : `ok${LONE}` });
    const rogues = rogueIds.map((id) => connectRawDevice(instance.wsUrl, id, ctx.token(id), rogueAck));
    await Promise.all(rogues.map((r) => r.answer));

    const load = startLoad({ origin, authorization, deviceIds: [...ids, ...rogueIds], rate: ctx.options.rate, timeoutMs: 30_000 });
    const client = makeRestClient(origin, 8);
    const badAnswers = new Map<string, Set<number | string>>();
    const bulk: Outcome[] = [];
    let validEvents = 0;
    // 8 s of mixed traffic by the clock (not by ticks: a server answering slowly must not stretch the run).
    const end = Date.now() + 8_000;
    for (let tick = 0; Date.now() < end; tick++) {
      const [label, method, path, body] = BAD_REST[tick % BAD_REST.length]!;
      const res = await client.request({ method, path, headers: { 'content-type': 'application/json', authorization }, body: body === undefined ? undefined : JSON.stringify(body) }).catch((e: Error) => e);
      const answers = badAnswers.get(label) ?? new Set();
      answers.add(res instanceof Error ? res.message : res.statusCode);
      if (!(res instanceof Error)) await res.body.text();
      badAnswers.set(label, answers);
      if (tick % 5 === 0) {
        const items = [...ids.slice(0, 9).map((deviceId, i) => ({ deviceId, ...valid(i) })), { deviceId: 'chaos-dev-1', ...valid(0), command: `bad${NUL}` }];
        const sentAt = Date.now();
        const r = await client.request({ method: 'POST', path: '/v1/actuations', headers: { 'content-type': 'application/json', authorization }, body: JSON.stringify(items) });
        const text = await r.body.text();
        const results = r.statusCode === 200 ? (JSON.parse(text) as { results: { status: number; actuation?: { id: string; seq: number } }[] }).results : [];
        results.forEach((item, i) => i < 9 && bulk.push({ deviceId: items[i]!.deviceId, sentAt, answeredAt: Date.now(), endedAt: Date.now(), status: item.status, id: item.actuation?.id, seq: item.actuation?.seq }));
        if (r.statusCode !== 200) bulk.push({ deviceId: 'chaos-dev-1', sentAt, answeredAt: Date.now(), endedAt: Date.now(), status: r.statusCode, body: text.slice(0, 200) });
        const badItem = results[9]?.status;
        (badAnswers.get('bulk item with U+0000') ?? badAnswers.set('bulk item with U+0000', new Set()).get('bulk item with U+0000')!).add(badItem ?? `whole bulk ${r.statusCode}`);
      }
      const dsn = ids[tick % ids.length]!;
      sim.emit(KEY, [
        { type: 'datapoint', dsn, oemModel: 'chaos-model', property: 'p', value: String(tick) },
        { type: 'datapoint', dsn: tick % 2 ? `bad${NUL}dsn` : dsn, oemModel: 'chaos-model', property: tick % 2 ? 'p' : `p${NUL}`, value: tick % 2 ? '1' : `v${LONE}` },
      ]);
      validEvents++;
      for (const r of rogues) if (tick % 20 === 10) r.send({ type: 'ack', id: NUL, statusCode: 200 });
      await sleep(100);
    }
    await client.close();
    const outcomes = await load.stop();

    const notDocumented = [...badAnswers].filter(([, answers]) => [...answers].some((a) => typeof a !== 'number' || a < 400 || a >= 500));
    ctx.figure('bad REST calls: answers by kind', JSON.stringify(Object.fromEntries([...badAnswers].map(([k, v]) => [k, [...v]]))));
    ctx.check('every bad REST call answered 4xx', notDocumented.length === 0, notDocumented.map(([k, v]) => `${k}: ${[...v].join(',')}`).join('; '));
    const validNot2xx = [...outcomes, ...bulk].filter((o) => o.status !== 202);
    ctx.check('every valid REST call and bulk item answered 202', validNot2xx.length === 0, validNot2xx.length ? `${validNot2xx.length}, e.g. ${validNot2xx[0]!.status} ${validNot2xx[0]!.body ?? ''}` : '');
    const badDeviceAnswers = await Promise.all(badDevices.map(async (d) => `${await d.answer}/${(await Promise.race([d.closed, sleep(5_000).then(() => ({ code: 'open' }))])).code}`));
    ctx.figure('unstorable device ids: answer / close code', badDeviceAnswers.join(', '));
    ctx.check('unstorable device ids refused with 401 and close 1008 or 1003', badDeviceAnswers.every((a) => /^401\/100[38]$/.test(a)), badDeviceAnswers.join(', '));
    const rogueCodes = rogues.flatMap((r) => r.codes);
    const rogueCloses = rogues.map((r) => r.closeCode ?? 'open');
    ctx.figure('devices acking with unstorable reasons: codes received / sockets', `${JSON.stringify([...new Set(rogueCodes)])} / ${rogueCloses.join(',')}`);
    ctx.check('no device was answered 500 or closed with 1011', !rogueCodes.includes(500) && !rogueCloses.includes(1011) && ![...fleet.disconnects.keys()].includes(1011), '');
    ctx.check('valid devices were never disconnected', fleet.disconnects.size === 0, JSON.stringify(Object.fromEntries(fleet.disconnects)));

    const dssDone = await ctx.within(10_000, async () => {
      const { rows } = await ctx.db.pool.query<{ n: number }>(`select count(*)::int as n from actuations where source->>'kind' = 'dss' and device_id = any($1) and status = 'acked'`, [ids]);
      return rows[0]!.n >= validEvents;
    });
    ctx.check(`every valid DSS event (${validEvents}) became an actuation that ended acked`, dssDone !== undefined, '');
    ctx.check('the DSS stream is still connected', await connected());
    ctx.check('the instance is still running', !instance.exited(), instance.exitDescription());
    for (const r of [...rogues, ...badDevices]) r.ws.terminate();
    await account(ctx, {
      outcomes: [...outcomes, ...bulk],
      fleets: [fleet],
      shouldAck: (id) => ids.includes(id),
      pendingReason: (row) => (rogueIds.includes(row.device_id) ? 'its device acks only with reasons that cannot be stored' : undefined),
    });
  },
};
