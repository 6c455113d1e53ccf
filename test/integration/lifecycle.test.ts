/**
 * The lifecycle's typed events (src/actuations/lifecycle.ts) and the transition metric
 * that listens to them: exactly one event, and one count, per committed transition, on
 * every path that makes it (a direct send and a claim both make `sent`; an ack by id and
 * an `upTo` both make `acked`), and none for a transaction that rolled back.
 *
 * "Exactly once" is checked against the database: each actuation's events, in order, are
 * the statuses of its history (one entry per committed transition), and
 * `iotws_actuations_total` per status is the number of events with that status. A second
 * event for one transition, or one for a rolled-back one, never matches, and the wait
 * for a match fails with what it last saw.
 *
 * How these were shown to fail without the mechanism: with the sweep's
 * `lifecycle.committed(timedOut)` moved inside its transaction (reported before the
 * commit), the refused sweeps report the timed_out actuation and the rollback test fails;
 * with a claim's `sent` reported twice, the first test fails on the claimed actuations
 * (events queued, sent, sent, acked against a history of queued, sent, acked).
 */
import { describe, expect, it } from 'vitest';
import type { ActuationEvent, TransitionPath } from '../../src/actuations/lifecycle.js';
import { requeueUnwritten } from '../../src/actuations/transitions-sql.js';
import { connectAuthenticated, type DeviceClient, type ServerMessage } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

const t = useTestServer({ SWEEP_INTERVAL_MS: '100', BACKLOG_RATE: '10000', DISPATCH_POLL_MS: '500' });

const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

/** Every event of the test server's lifecycle, from the first test on. */
const seen: ActuationEvent[] = [];
let subscribed = false;
function listen(): void {
  if (subscribed) return;
  subscribed = true;
  t.server.app.lifecycle.subscribe((e) => seen.push(e));
}

async function post(deviceId: string, body: Record<string, unknown> = {}) {
  const res = await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: { ...command, ...body } });
  expect(res.status).toBe(202);
  return (await res.json()) as { id: string; status: string; seq: number };
}

async function connect(deviceId: string): Promise<DeviceClient> {
  return connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
}

async function statusOf(id: string): Promise<string> {
  const { rows } = await t.db.pool.query<{ status: string }>('select status from actuations where id = $1', [id]);
  return rows[0]!.status;
}

/** Per actuation: the statuses of its history (one entry per committed transition) and of its events. */
async function historyAndEvents(ids: string[]) {
  const { rows } = await t.db.pool.query<{ id: string; statuses: string[] }>(
    `select id, array(select e->>'status' from jsonb_array_elements(history) e where e ? 'status') as statuses
       from actuations where id = any($1::uuid[]) order by id`,
    [ids],
  );
  return rows.map((r) => ({ id: r.id, history: r.statuses, events: seen.filter((e) => e.actuationId === r.id).map((e) => e.status) }));
}

async function scrape(): Promise<string> {
  const res = await t.server.api('/metrics');
  return res.text();
}

function counted(text: string, status: string): number {
  const series = `iotws_actuations_total{source="rest",status="${status}"} `;
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line === undefined ? 0 : Number(line.slice(series.length));
}

/** The metric per status, and the number of events per status: equal when each transition was counted once. */
async function metricAgainstEvents() {
  const text = await scrape();
  const statuses = ['queued', 'sent', 'acked', 'failed', 'expired', 'timed_out', 'cancelled', 'superseded'];
  return statuses.map((s) => ({ status: s, metric: counted(text, s), events: seen.filter((e) => e.status === s && e.source === 'rest').length }));
}

const matches = (rows: { history: string[]; events: string[] }[]) => rows.every((r) => r.history.join() === r.events.join());
const paths = (id: string): TransitionPath[] => seen.filter((e) => e.actuationId === id).map((e) => e.via);

describe('lifecycle events', () => {
  it('fire once per committed transition on every path, as the history records it, and the metric counts each once', async () => {
    listen();
    const ids: string[] = [];

    // Direct send (a POST to a device live here, nothing queued) and ack by id. The device
    // leaves the backlog lane after a tick or two: POST until one is sent directly.
    const live = await connect('lc-live');
    const direct = await eventually(
      async () => {
        const a = await post('lc-live');
        ids.push(a.id);
        const message = await live.next();
        live.send({ type: 'ack', id: message.id, statusCode: 200 });
        return a;
      },
      (a) => a.status === 'sent',
    );
    // The same ack again: `late`, no transition.
    live.send({ type: 'ack', id: direct.id, statusCode: 200 });
    const failing = await post('lc-live');
    ids.push(failing.id);
    live.send({ type: 'ack', id: (await live.next()).id, statusCode: 500, reasonPhrase: 'broken' });

    // Claim (queued while offline, claimed on connect) and an `upTo` ack over all three.
    const later = [await post('lc-later'), await post('lc-later'), await post('lc-later')];
    ids.push(...later.map((a) => a.id));
    const laterDevice = await connect('lc-later');
    const received: ServerMessage[] = [];
    while (received.length < 3) received.push(await laterDevice.next());
    laterDevice.send({ type: 'ack', upTo: received[2]!.seq });

    // Cancel (twice: the second is refused), supersede, expire.
    const cancelled = await post('lc-idle');
    expect((await t.server.api(`/v1/actuations/${cancelled.id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await t.server.api(`/v1/actuations/${cancelled.id}`, { method: 'DELETE' })).status).toBe(409);
    const older = await post('lc-idle', { collapseKey: 'k' });
    const newer = await post('lc-idle', { collapseKey: 'k' });
    const expiring = await post('lc-idle', { ttlSeconds: 1 });
    ids.push(cancelled.id, older.id, newer.id, expiring.id);

    // Timed out: sent, never acked.
    const slowDevice = await connect('lc-slow');
    const slow = await post('lc-slow', { ackTimeoutSeconds: 1 });
    ids.push(slow.id);
    await slowDevice.next();

    // Requeue (sent, then not written: put back), then claimed again and acked.
    const requeueDevice = await connect('lc-requeue');
    const requeued = await post('lc-requeue');
    ids.push(requeued.id);
    await requeueDevice.next();
    await eventually(() => statusOf(requeued.id), (s) => s === 'sent');
    await requeueUnwritten(t.db.pool, [requeued.id], t.server.app.lifecycle, 'test: as if the socket had closed');
    const again = await requeueDevice.next(10_000);
    expect(again.id).toBe(requeued.id);
    requeueDevice.send({ type: 'ack', id: requeued.id, statusCode: 200 });

    const finals = { [direct.id]: 'acked', [failing.id]: 'failed', [cancelled.id]: 'cancelled', [older.id]: 'superseded', [expiring.id]: 'expired', [slow.id]: 'timed_out', [requeued.id]: 'acked' };
    for (const a of later) finals[a.id] = 'acked';
    await eventually(async () => Promise.all(Object.entries(finals).map(async ([id, s]) => (await statusOf(id)) === s)), (ok) => ok.every(Boolean));

    const rows = await eventually(() => historyAndEvents(ids), matches);
    expect(rows.filter((r) => r.history.join() !== r.events.join())).toEqual([]);
    const metric = await eventually(() => metricAgainstEvents(), (m) => m.every((x) => x.metric === x.events));
    expect(metric.filter((x) => x.metric !== x.events)).toEqual([]);
    expect(metric.every((x) => x.events > 0)).toBe(true);

    // Each path made its transition, and the events say which.
    expect(paths(direct.id)).toEqual(['submit', 'direct_send', 'ack']);
    expect(later.map((a) => paths(a.id))).toEqual(later.map(() => ['submit', 'claim', 'ack_up_to']));
    expect(paths(failing.id).at(-1)).toBe('ack');
    expect(paths(cancelled.id)).toEqual(['submit', 'cancel']);
    expect(paths(older.id)).toEqual(['submit', 'supersede']);
    expect(paths(newer.id)).toEqual(['submit']);
    expect(paths(expiring.id)).toEqual(['submit', 'sweep']);
    expect(paths(slow.id).at(-1)).toBe('sweep');
    expect(paths(requeued.id).slice(-3)).toEqual(['requeue', 'claim', 'ack']);

    // What a listener gets: the ids, the source, the ack's code, where it was sent, what superseded it.
    const failedEvent = seen.find((e) => e.actuationId === failing.id && e.type === 'actuation.failed');
    expect(failedEvent).toMatchObject({ deviceId: 'lc-live', seq: failing.seq, source: 'rest', statusCode: 500, reasonPhrase: 'broken', instanceId: t.server.config.instanceId });
    expect(seen.find((e) => e.actuationId === direct.id && e.type === 'actuation.sent')).toMatchObject({ sessionId: expect.any(Number), instanceId: t.server.config.instanceId });
    expect(seen.find((e) => e.actuationId === older.id && e.type === 'actuation.superseded')).toMatchObject({ supersededBy: newer.id });
    expect(seen.find((e) => e.actuationId === later[0]!.id && e.type === 'actuation.acked')).toMatchObject({ statusCode: 200 });

    for (const d of [live, laterDevice, slowDevice, requeueDevice]) d.close();
  });

  it('fire for no transaction that rolled back: a refused sweep, a refused ack in a batch', async () => {
    listen();
    // Refusals the test controls: a trigger that fails the statement (and so its transaction)
    // for the devices below, counting each refusal in a sequence (a sequence survives rollback).
    await t.db.pool.query(`create sequence lc_refusals`);
    await t.db.pool.query(`create function lc_refuse() returns trigger language plpgsql as $$
      begin
        if (new.device_id = 'lc-refuse-expire' and new.status = 'expired') or (new.device_id = 'lc-refuse-ack' and new.reason_phrase = 'refuse') then
          perform nextval('lc_refusals');
          raise exception 'refused by the test';
        end if;
        return new;
      end $$`);
    await t.db.pool.query(`create trigger lc_refuse before update on actuations for each row execute function lc_refuse()`);
    const refusals = async () => (await t.db.pool.query<{ n: number }>('select case when is_called then last_value::int else 0 end as n from lc_refusals')).rows[0]!.n;

    // Overdue first, and refused: every sweep from then on fails on it.
    const expiring = await post('lc-refuse-expire', { ttlSeconds: 1 });
    // Overdue later: each sweep times it out, then fails on the expiry: the timed_out rolls back with it.
    const slowDevice = await connect('lc-refuse-slow');
    const slow = await post('lc-refuse-slow', { ackTimeoutSeconds: 2 });
    await slowDevice.next();
    // Once the slow one is overdue, two more refused sweeps: each timed it out, then failed.
    await eventually(() => t.db.pool.query(`select 1 from actuations where id = $1 and ack_deadline_at < now()`, [slow.id]), (r) => r.rowCount === 1, 15_000);
    const before = await refusals();
    await eventually(refusals, (n) => n >= before + 2, 15_000);
    expect(await statusOf(slow.id)).toBe('sent');
    expect((await historyAndEvents([slow.id, expiring.id])).map((r) => r.events)).toEqual(
      [slow.id, expiring.id].sort().map((id) => (id === slow.id ? ['queued', 'sent'] : ['queued'])),
    );

    // Ten acks of one device at once, one refused: its batch rolls back and is split; the nine commit.
    const ackDevice = await connect('lc-refuse-ack');
    const acked: { id: string }[] = [];
    for (let i = 0; i < 10; i++) acked.push(await post('lc-refuse-ack'));
    for (let i = 0; i < 10; i++) await ackDevice.next();
    await eventually(() => Promise.all(acked.map((a) => statusOf(a.id))), (s) => s.every((x) => x === 'sent'));
    acked.forEach((a, i) => ackDevice.send({ type: 'ack', id: a.id, statusCode: 200, reasonPhrase: i === 4 ? 'refuse' : 'OK' }));
    await eventually(() => Promise.all(acked.map((a) => statusOf(a.id))), (s) => s.filter((x) => x === 'acked').length === 9);

    // Refusals lifted: the next sweep commits both, each reported once.
    await t.db.pool.query(`drop trigger lc_refuse on actuations`);
    await eventually(() => Promise.all([statusOf(slow.id), statusOf(expiring.id)]), (s) => s[0] === 'timed_out' && s[1] === 'expired', 15_000);

    const ids = [slow.id, expiring.id, ...acked.map((a) => a.id)];
    const rows = await eventually(() => historyAndEvents(ids), matches);
    expect(rows.filter((r) => r.history.join() !== r.events.join())).toEqual([]);
    expect(seen.filter((e) => e.actuationId === acked[4]!.id).map((e) => e.status)).toEqual(['queued', 'sent']);
    const metric = await eventually(() => metricAgainstEvents(), (m) => m.every((x) => x.metric === x.events));
    expect(metric.filter((x) => x.metric !== x.events)).toEqual([]);
    slowDevice.close();
    ackDevice.close();
  });
});
