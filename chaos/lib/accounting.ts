/**
 * The end of every scenario: what the REST callers got, and an accounting over the
 * database and what the devices received.
 *
 * restFigures: 2xx / 503 / 500 / other / hung (answered later than the bound, or not
 * at all) among the requests in flight during a window, and the time from the end of
 * the window to the first 202 for a request sent after it.
 *
 * account: every 2xx actuation is in the database with its device and seq, in a
 * documented state; every one for a device that should have got it (connected, acking)
 * was received and ended `acked`; what remains `queued`/`sent` has a reason the scenario
 * names; no device received an actuation again after its ack was recorded; every
 * re-send carried the same id and seq; no received id is unknown; no session row is
 * open for a device whose socket is closed, and none is left once every device closed.
 */
import type { ChaosContext } from './context.js';
import type { Fleet } from './devices.js';
import type { Outcome } from './load.js';

const FINAL = new Set(['acked', 'failed', 'expired', 'cancelled', 'superseded', 'timed_out']);
const DOCUMENTED = new Set([...FINAL, 'queued', 'sent']);

export function restFigures(ctx: ChaosContext, outcomes: Outcome[], window: { from: number; to: number }, hangLimitMs: number): void {
  const isHung = (o: Outcome) => o.status === 'timeout' || (o.answeredAt !== undefined && o.answeredAt - o.sentAt > hangLimitMs);
  const waited = (o: Outcome) => (o.endedAt ?? Date.now()) - o.sentAt;
  const describe = (label: string, list: Outcome[]) => {
    const count = (f: (o: Outcome) => boolean) => list.filter(f).length;
    const other = count((o) => typeof o.status !== 'number' || (o.status >= 300 && o.status !== 503 && o.status !== 500));
    ctx.figure(`REST calls ${label}`, list.length);
    ctx.figure('  2xx / 503 / 500 / other (connection errors included)', `${count((o) => typeof o.status === 'number' && o.status < 300)} / ${count((o) => o.status === 503)} / ${count((o) => o.status === 500)} / ${other}`);
    ctx.figure(`  hung (no answer within ${hangLimitMs} ms; aborted after ${hangLimitMs + 5_000})`, count(isHung));
    ctx.figure('  longest wait, ms', Math.max(0, ...list.map(waited)));
  };
  describe('in flight during the outage', outcomes.filter((o) => o.sentAt <= window.to && (o.endedAt ?? Number.POSITIVE_INFINITY) >= window.from));
  describe('sent after the outage', outcomes.filter((o) => o.sentAt > window.to));
  const after = outcomes.filter((o) => o.sentAt >= window.to && o.status === 202 && o.answeredAt !== undefined);
  const first202 = after.length === 0 ? undefined : Math.min(...after.map((o) => o.answeredAt!)) - window.to;
  ctx.figure('outage end to first 202, ms', first202 ?? 'never');
  const all500 = outcomes.filter((o) => o.status === 500);
  const hung = outcomes.filter(isHung);
  ctx.check('no REST call answered 500', all500.length === 0, all500.length ? `${all500.length}, e.g. ${all500[0]!.body}` : '');
  ctx.check(`no REST call waited longer than ${hangLimitMs} ms`, hung.length === 0, hung.length ? `${hung.length} of ${outcomes.length} hung, longest ${Math.max(...hung.map(waited))} ms` : '');
  ctx.check('first 202 within 2 s of the outage end', first202 !== undefined && first202 <= 2_000, first202 === undefined ? 'no 202 after the outage' : `${first202} ms`);
}

interface Row {
  id: string;
  device_id: string;
  seq: number;
  status: string;
  completed_at: Date | null;
}

export interface AccountOptions {
  outcomes: Outcome[];
  fleets: Fleet[];
  /** Devices that are connected and acking at the end: all their actuations must end `acked`. Default: every fleet device. */
  shouldAck?: (deviceId: string) => boolean;
  /** Why an actuation may stay queued/sent (undefined: it may not). */
  pendingReason?: (row: { device_id: string; status: string }) => string | undefined;
  /** How long to wait for the expected acks to be recorded. (Default: 10 s) */
  drainMs?: number;
}

export async function account(ctx: ChaosContext, options: AccountOptions): Promise<void> {
  const pool = ctx.db.pool;
  const fleetIds = new Set(options.fleets.flatMap((f) => f.ids));
  const shouldAck = options.shouldAck ?? ((id: string) => fleetIds.has(id));
  const accepted = options.outcomes.filter((o) => typeof o.status === 'number' && o.status >= 200 && o.status < 300 && o.id);
  // Every actuation of a connected acking device must end acked: the 2xx ones, and any the database
  // holds without a 2xx answer (a call that timed out or got 503 after its commit, a DSS rule's).
  const ackDevices = [...fleetIds].filter(shouldAck);

  const drainMs = await ctx.within(options.drainMs ?? 10_000, async () => {
    const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from actuations where device_id = any($1) and status <> 'acked'`, [ackDevices]);
    return rows[0]!.n === 0;
  });
  ctx.figure('time for the expected acks to be recorded, ms', drainMs ?? `not within ${options.drainMs ?? 10_000}`);

  const { rows } = await pool.query<Row>(`select id, device_id, seq::int as seq, status, completed_at from actuations`);
  const ackSet = new Set(ackDevices);
  const expected = rows.filter((r) => ackSet.has(r.device_id)).map((r) => r.id);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const received = new Map<string, { deviceId: string; seq: number | undefined; at: number }[]>();
  const ackedAt = new Map<string, number>();
  for (const fleet of options.fleets) {
    for (const [id, list] of fleet.received) received.set(id, [...(received.get(id) ?? []), ...list]);
    for (const [id, at] of fleet.ackedAt) ackedAt.set(id, Math.min(at, ackedAt.get(id) ?? at));
  }

  const missing = accepted.filter((o) => { const r = byId.get(o.id!); return !r || r.device_id !== o.deviceId || r.seq !== o.seq; });
  ctx.figure('2xx actuations', accepted.length);
  ctx.figure('actuations in the database (2xx, plus any committed without a 2xx answer, DSS, history)', rows.length);
  ctx.check('every 2xx actuation is in the database with its device and seq', missing.length === 0, missing.length ? `${missing.length} missing or different, e.g. ${missing[0]!.id}` : '');

  const undocumented = rows.filter((r) => !DOCUMENTED.has(r.status));
  const unexplained = rows.filter((r) => !FINAL.has(r.status) && !shouldAck(r.device_id) && !options.pendingReason?.(r));
  ctx.check('every actuation is in a documented state', undocumented.length === 0 && unexplained.length === 0, undocumented.length + unexplained.length ? `${undocumented.length} undocumented, ${unexplained.length} queued/sent without a reason` : '');

  const notReceived = expected.filter((id) => !received.has(id));
  const ackLost = expected.filter((id) => ackedAt.has(id) && byId.get(id)?.status !== 'acked');
  const notAcked = expected.filter((id) => byId.get(id)?.status !== 'acked');
  const states = countBy(notAcked.map((id) => byId.get(id)?.status ?? 'missing'));
  ctx.check('every actuation for a connected acking device was delivered', notReceived.length === 0, notReceived.length ? `${notReceived.length} of ${expected.length} never reached their device` : `${expected.length}`);
  // A failure names two of its actuations with their history and their device's sessions, to start the search from.
  for (const id of [...new Set([...ackLost, ...notReceived])].slice(0, 2)) {
    const { rows: [row] } = await pool.query(`select id, device_id, seq, status, attempts, last_session_id, history from actuations where id = $1`, [id]);
    const { rows: sessions } = await pool.query(`select id, instance_id, connected_at, disconnected_at, close_reason from device_sessions where device_id = $1 order by id`, [row.device_id]);
    ctx.log(`  e.g. ${JSON.stringify({ actuation: row, sessions, ackedByDeviceAt: ackedAt.get(id) ?? null, receivedAt: received.get(id)?.map((r) => r.at) ?? [] })}`);
  }
  ctx.check('every actuation its device acked ended acked', ackLost.length === 0, ackLost.length ? `${ackLost.length} acked by the device but ${JSON.stringify(countBy(ackLost.map((id) => byId.get(id)!.status)))} in the database` : '');
  ctx.check('every expected actuation is acked', notAcked.length === 0, notAcked.length ? JSON.stringify(states) : '');

  let resentAfterAck = 0;
  let resentAfterRecorded = 0;
  let seqMismatch = 0;
  let unknown = 0;
  let duplicates = 0;
  for (const [id, list] of received) {
    const row = byId.get(id);
    if (!row) unknown++;
    if (list.length > 1) duplicates += list.length - 1;
    if (list.some((r) => r.seq !== row?.seq || r.deviceId !== row?.device_id)) seqMismatch++;
    const acked = ackedAt.get(id);
    if (acked !== undefined && list.some((r) => r.at > acked)) resentAfterAck++;
    const recorded = row?.status === 'acked' ? row.completed_at?.getTime() : undefined;
    if (recorded !== undefined && list.some((r) => r.at > recorded)) resentAfterRecorded++;
  }
  ctx.figure('re-sends received (same actuation again)', duplicates);
  ctx.figure('re-sent after the device had acked (ack not recorded yet)', resentAfterAck);
  ctx.check('no device received an actuation again after its ack was recorded', resentAfterRecorded === 0, resentAfterRecorded ? `${resentAfterRecorded}` : '');
  ctx.check('every re-send carried the same id and seq', seqMismatch === 0, seqMismatch ? `${seqMismatch} with another seq or device` : '');
  ctx.check('devices received no actuation the database does not know', unknown === 0, unknown ? `${unknown}` : '');

  await checkSessions(ctx, options.fleets);
}

/** Open session rows must match open sockets now, and be gone once every device has closed. */
export async function checkSessions(ctx: ChaosContext, fleets: Fleet[], closeTimeoutMs = 15_000): Promise<void> {
  const pool = ctx.db.pool;
  const openRows = async () => (await pool.query<{ device_id: string }>(`select device_id from device_sessions where disconnected_at is null`)).rows.map((r) => r.device_id);
  const open = new Set(fleets.flatMap((f) => [...f.openIds()]));
  let stray: string[] = [];
  await ctx.within(5_000, async () => {
    stray = (await openRows()).filter((id) => !open.has(id));
    return stray.length === 0;
  });
  ctx.check('no session row open for a closed socket', stray.length === 0, stray.length ? `${stray.length}, e.g. ${stray[0]}` : `${open.size} open sockets`);
  await Promise.all(fleets.map((f) => f.stop()));
  const closedMs = await ctx.within(closeTimeoutMs, async () => (await openRows()).length === 0);
  const left = (await openRows()).length;
  ctx.check(`every session row closed within ${closeTimeoutMs / 1000} s of the devices closing`, closedMs !== undefined, closedMs === undefined ? `${left} still open` : `${closedMs} ms`);
}

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
