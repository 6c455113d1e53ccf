/**
 * The change feed (GET /v1/events): events recorded in the transaction of each
 * transition (by its statement, into event_rows), numbered once committed (the sequencer), read
 * by every instance, resumed exactly once, dropped when a subscriber stops reading.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../src/db/pool.js';
import { readEvents as readPage, sequenceAndReadEvents, sequenceEvents, type SequencingPass } from '../../src/events/events-sql.js';
import { makeEventFeed } from '../../src/events/feed.js';
import { startEventSequencer, type EventSequencer } from '../../src/events/sequencer.js';
import { makeLogger } from '../../src/logger.js';
import { matchesFilter, type EventFilter } from '../../src/events/filter.js';
import { eventRetentionPass } from '../../src/events/retention.js';
import { OLDEST_EVENT_ID_HEADER } from '../../src/http/routes/events.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openSse, type SseClient } from '../helpers/sse-client.js';

let db: TestDatabase;
let a: TestServer;
let b: TestServer;
const open: SseClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  a = await startTestServer(db, { INSTANCE_ID: 'feed-a', EVENTS_HEARTBEAT_MS: '200' });
  b = await startTestServer(db, { INSTANCE_ID: 'feed-b' });
});
afterAll(async () => {
  for (const c of open) c.close();
  await a?.close();
  await b?.close();
  await db?.drop();
});

async function subscribe(server: TestServer, path = '/v1/events', headers: Record<string, string> = {}): Promise<SseClient> {
  const client = await openSse(server.port, path, headers);
  open.push(client);
  return client;
}

const command = { componentId: 'c', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

async function post(server: TestServer, deviceId: string, accountId?: string): Promise<string> {
  const res = await server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: { ...command, ...(accountId ? { accountId } : {}) } });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** The events of the ids after `after` (a window of `limit` ids) that pass `filter`. */
async function readEvents(pool: TestDatabase['pool'], after: number, upTo: number | null, filter: EventFilter, limit: number) {
  return (await readPage(pool, after, upTo, filter, limit)).events;
}

async function allEventIds(): Promise<number[]> {
  const { rows } = await db.pool.query<{ id: string }>('select id from events order by id');
  return rows.map((r) => Number(r.id));
}

/**
 * A transition written by hand in its own transaction: an actuation row inserted and its
 * `actuation.queued` recorded in the same statement, as submit_actuations does (migration 0020).
 */
async function insertActuation(client: { query: (sql: string, params: unknown[]) => Promise<unknown> }, deviceId: string, seq: number): Promise<string> {
  const id = crypto.randomUUID();
  await client.query(
    `with created as (
       insert into actuations as a (id, device_id, seq, gateway_id, component_id, command, source)
       values ($1, $2, $3, 'g', 'c', 'x', '{"kind":"rest","caller":"t","requestId":"r"}') returning a
     )
     insert into actuation_event_rows select e.* from created c cross join lateral actuation_event(c.a, 'queued', null) e`,
    [id, deviceId, seq],
  );
  return id;
}

describe('change feed', () => {
  it('streams every transition of an actuation and the session, with the fields a listener needs', async () => {
    const feed = await subscribe(a, '/v1/events?deviceId=feed-dev-1');
    expect(feed.status).toBe(200);
    expect(feed.headers['content-type']).toMatch(/^text\/event-stream/);
    const device = await connectAuthenticated(a.wsUrl, 'feed-dev-1', mint('feed-dev-1', { accountId: 'acme' }));
    const id = await post(a, 'feed-dev-1', 'acme');
    const message = await device.next(5_000);
    device.send({ type: 'ack', id: message.id, statusCode: 200, reasonPhrase: 'OK' });
    const events = await feed.waitFor((e) => e.some((x) => x.event === 'actuation.acked'));
    expect(events.map((e) => e.event)).toEqual(['device.connected', 'actuation.queued', 'actuation.sent', 'actuation.acked']);
    // Every event's id line is its position, and the body carries it too.
    for (const e of events) expect(e.json.id).toBe(Number(e.id));
    expect(feed.ids()).toEqual([...feed.ids()].sort((x, y) => x - y));
    const acked = events.at(-1)!.json;
    expect(acked).toMatchObject({ type: 'actuation.acked', data: { id, deviceId: 'feed-dev-1', accountId: 'acme', seq: 1, status: 'acked', previousStatus: 'sent', statusCode: 200, reasonPhrase: 'OK', instanceId: 'feed-a', source: { kind: 'rest' } } });
    expect(typeof acked.data.sessionId).toBe('number');
    expect(new Date(acked.at).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(events[0]!.json.data).toMatchObject({ deviceId: 'feed-dev-1', accountId: 'acme', instanceId: 'feed-a', sessionId: acked.data.sessionId });
    device.close();
    await feed.waitFor((e) => e.some((x) => x.event === 'device.disconnected'));
    feed.close();
  });

  it('records a takeover as the old session disconnected, then the new one connected, under the account of the registry', async () => {
    // Written by the session statements themselves (migrations/0023); checked to fail with the
    // takeover's device.disconnected left out of SESSION_EVENTS (src/gateway/sessions-sql.ts).
    const feed = await subscribe(a, '/v1/events?deviceId=feed-takeover');
    const first = await connectAuthenticated(a.wsUrl, 'feed-takeover', mint('feed-takeover', { accountId: 'acme' }));
    const second = await connectAuthenticated(b.wsUrl, 'feed-takeover', mint('feed-takeover'));
    const events = await feed.waitFor((e) => e.filter((x) => x.event === 'device.connected').length === 2);
    expect(events.map((e) => [e.event, e.json.data.sessionId, e.json.data.instanceId, e.json.data.closeReason])).toEqual([
      ['device.connected', events[0]!.json.data.sessionId, 'feed-a', null],
      ['device.disconnected', events[0]!.json.data.sessionId, 'feed-a', 'session replaced'],
      ['device.connected', events[2]!.json.data.sessionId, 'feed-b', null],
    ]);
    expect(events[2]!.json.data.sessionId).not.toBe(events[0]!.json.data.sessionId);
    // The second token names no account: the session has none, the registry keeps acme.
    expect(events[2]!.json.data.accountId).toBeNull();
    const { rows } = await db.pool.query(`select type, account_id from events where device_id = 'feed-takeover' order by id`);
    expect(rows).toEqual([
      { type: 'device.connected', account_id: 'acme' },
      { type: 'device.disconnected', account_id: 'acme' },
      { type: 'device.connected', account_id: 'acme' },
    ]);
    await first.closed;
    second.close();
    const closed = await feed.waitFor((e) => e.length === 4);
    expect(closed[3]).toMatchObject({ event: 'device.disconnected', json: { data: { sessionId: events[2]!.json.data.sessionId, closeCode: 1000, instanceId: 'feed-b' } } });
    feed.close();
  });

  it("builds an actuation event's data from its columns as SQL does, key for key and in jsonb's key order", async () => {
    // Stored as columns since migration 0020: the server builds `data` (src/events/stored-event.ts), the view
    // `events` builds it in SQL (event_data). (Checked to fail with the server's keys reordered, and with a column dropped.)
    const start = (await allEventIds()).at(-1) ?? 0;
    const collapsed = { ...command, collapseKey: 'k' };
    for (let i = 0; i < 2; i++) {
      const res = await a.api('/v1/devices/feed-cols/actuations', { method: 'POST', json: { ...collapsed, accountId: 'acme' } });
      expect(res.status).toBe(202);
    }
    const device = await connectAuthenticated(a.wsUrl, 'feed-cols', mint('feed-cols'));
    const message = await device.next(5_000);
    device.send({ type: 'ack', id: message.id, statusCode: 503, reasonPhrase: 'Busy "now"' });
    await eventually(async () => (await readEvents(db.pool, start, null, { deviceId: 'feed-cols', types: ['actuation.failed'] }, 1_000)).length, (n) => n === 1);
    const served = (await readEvents(db.pool, start, null, { deviceId: 'feed-cols' }, 1_000)).filter((e) => e.type.startsWith('actuation.'));
    expect(served.map((e) => e.type)).toEqual(['actuation.queued', 'actuation.queued', 'actuation.superseded', 'actuation.sent', 'actuation.failed']);
    const { rows } = await db.pool.query<{ id: string; data: unknown; stored: boolean }>(
      `select e.id, e.data, r.data is null as stored from events e join event_rows r on r.pos = e.pos where e.id = any($1::bigint[]) order by e.id`,
      [served.map((e) => e.id)],
    );
    expect(rows.every((r) => r.stored)).toBe(true);
    expect(served.map((e) => JSON.stringify(e.data))).toEqual(rows.map((r) => JSON.stringify(r.data)));
    expect(served.at(-1)!.data).toMatchObject({ status: 'failed', previousStatus: 'sent', statusCode: 503, reasonPhrase: 'Busy "now"', accountId: 'acme', seq: 2, attempts: 1 });
    expect(served[2]!.data).toMatchObject({ status: 'superseded', previousStatus: 'queued', seq: 1, supersededBy: served[1]!.data.id, sessionId: null });
    device.close();
    // Its device.disconnected belongs to this test, not the next one's window of ids.
    await eventually(async () => (await readEvents(db.pool, start, null, { deviceId: 'feed-cols', types: ['device.disconnected'] }, 1_000)).length, (n) => n === 1);
  });

  it('resumes exactly once across reconnects, on the same and on another instance', async () => {
    const start = (await allEventIds()).at(-1) ?? 0;
    const first = await subscribe(a, `/v1/events?after=${start}`);
    for (let i = 0; i < 5; i++) await post(a, 'resume-dev');
    await first.waitFor((e) => e.length >= 5);
    first.close();
    // Posted while nobody listens, on both instances.
    for (let i = 0; i < 5; i++) await post(i % 2 ? a : b, 'resume-dev');
    // EventSource sends Last-Event-ID and keeps its original URL (with the older after=): the header wins.
    const second = await subscribe(b, `/v1/events?after=${start}`, { 'last-event-id': first.lastId()! });
    for (let i = 0; i < 5; i++) await post(a, 'resume-dev');
    await second.waitFor((e) => e.length >= 10);
    second.close();
    const third = await subscribe(a, '/v1/events', { 'last-event-id': second.lastId()! });
    await post(b, 'resume-dev');
    await third.waitFor((e) => e.length >= 1);
    const received = [...first.ids(), ...second.ids(), ...third.ids()];
    const expected = (await allEventIds()).filter((id) => id > start);
    expect(received).toEqual(expected);
    expect(expected).toHaveLength(16);
    // Gap-free positions: a client can tell it missed nothing.
    expect(expected.at(-1)! - expected[0]! + 1).toBe(expected.length);
  });

  it('brings an event committed on instance A to a subscriber of instance B, live', async () => {
    const onB = await subscribe(b, '/v1/events?deviceId=cross-feed');
    // The subscription is open once the first comment arrived; what is posted now is live.
    await eventually(() => onB.comments, (c) => c.includes('connected'));
    const id = await post(a, 'cross-feed');
    const [event] = await onB.waitFor((e) => e.length >= 1);
    expect(event!.json).toMatchObject({ type: 'actuation.queued', data: { id, deviceId: 'cross-feed' } });
  });

  it('numbers events in commit order, not write order, and never shows a rolled-back transaction', async () => {
    const feed = await subscribe(a, '/v1/events?deviceId=order-dev');
    await eventually(() => feed.comments, (c) => c.includes('connected'));
    const early = await db.pool.connect();
    const late = await db.pool.connect();
    const doomed = await db.pool.connect();
    try {
      // `early` writes first and commits last; `doomed` writes in between and rolls back.
      await early.query('begin');
      const earlyId = await insertActuation(early, 'order-dev', 1);
      await doomed.query('begin');
      const doomedId = await insertActuation(doomed, 'order-dev', 2);
      await late.query('begin');
      const lateId = await insertActuation(late, 'order-dev', 3);
      await late.query('commit');
      await feed.waitFor((e) => e.some((x) => x.json.data.id === lateId));
      await doomed.query('rollback');
      await early.query('commit');
      await feed.waitFor((e) => e.some((x) => x.json.data.id === earlyId));
      // A marker committed after the rollback: once it is seen, the doomed event would have been too.
      const markerId = await insertActuation(db.pool, 'order-dev', 4);
      const events = await feed.waitFor((e) => e.some((x) => x.json.data.id === markerId));
      expect(events.map((e) => e.json.data.id)).toEqual([lateId, earlyId, markerId]);
      expect(events.some((e) => e.json.data.id === doomedId)).toBe(false);
      const [lateEvent, earlyEvent] = events;
      // Numbered at write time, `early` (which wrote first) would have the smaller id, and
      // readers past `late` would skip it. Checked against 0012's sequencer: numbering by
      // the write order, this test fails (the feed never shows `early`).
      expect(Number(earlyEvent!.id)).toBeGreaterThan(Number(lateEvent!.id));
      const resumed = await subscribe(b, '/v1/events?deviceId=order-dev', { 'last-event-id': lateEvent!.id! });
      const again = await resumed.waitFor((e) => e.some((x) => x.json.data.id === markerId));
      expect(again.map((e) => e.json.data.id)).toEqual([earlyId, markerId]);
      const { rows } = await db.pool.query(`select 1 from event_rows where actuation_id = $1`, [doomedId]);
      expect(rows).toEqual([]);
    } finally {
      early.release();
      late.release();
      doomed.release();
    }
  });

  it('passes over positions still in progress: a rolled-back one is dropped, an open writer is numbered once it commits, ids stay gap-free', async () => {
    const start = (await allEventIds()).at(-1) ?? 0;
    const writer = await db.pool.connect();
    const doomed = await db.pool.connect();
    const pending = async () => (await db.pool.query<{ pending: string[] }>('select pending from event_sequencer')).rows[0]!.pending.map(Number);
    const posOf = async (client: { query: typeof db.pool.query }, actuationId: string) =>
      Number((await client.query<{ pos: string }>(`select pos from event_rows where actuation_id = $1`, [actuationId])).rows[0]!.pos);
    const idOf = async (actuationId: string) =>
      (await db.pool.query<{ id: string }>(`select id from events where data->>'id' = $1 and id > $2`, [actuationId, start])).rows.map((r) => Number(r.id));
    try {
      // Two transactions draw positions and stay open; a later one commits.
      await writer.query('begin');
      const writerId = await insertActuation(writer, 'pending-dev', 1);
      const writerPos = await posOf(writer, writerId);
      await doomed.query('begin');
      const doomedId = await insertActuation(doomed, 'pending-dev', 2);
      const doomedPos = await posOf(doomed, doomedId);
      const lateId = await insertActuation(db.pool, 'pending-dev', 3);
      expect(writerPos).toBeLessThan(doomedPos);
      expect(doomedPos).toBeLessThan(await posOf(db.pool, lateId));
      // The feed does not wait for them: `late` is numbered, their positions are pending.
      // Checked: with sequence_events dropping every invisible pending position at once
      // (no fence), this test fails here, and the writer's event would be lost.
      const [lateEventId] = await eventually(() => idOf(lateId), (ids) => ids.length === 1);
      expect(await pending()).toEqual(expect.arrayContaining([writerPos, doomedPos]));
      await doomed.query('rollback');
      const markerId = await insertActuation(db.pool, 'pending-dev', 4);
      const [markerEventId] = await eventually(() => idOf(markerId), (ids) => ids.length === 1);
      expect(markerEventId).toBeGreaterThan(lateEventId!);
      // The open writer's position is kept while it runs (it may still commit)…
      expect(await pending()).toContain(writerPos);
      await writer.query('commit');
      // …and once it commits its event is numbered, after everything numbered before.
      const [writerEventId] = await eventually(() => idOf(writerId), (ids) => ids.length === 1);
      expect(writerEventId).toBeGreaterThan(markerEventId!);
      // The rolled-back position is dropped (every transaction that could hold it has ended), never numbered.
      await eventually(pending, (p) => !p.includes(doomedPos) && !p.includes(writerPos));
      expect(await idOf(doomedId)).toEqual([]);
      const ids = (await allEventIds()).filter((id) => id > start);
      expect(ids).toEqual(ids.map((_, i) => start + 1 + i));
      // A subscriber resuming from before `late` gets the device's events in id order, the doomed one never.
      const feed = await subscribe(b, `/v1/events?deviceId=pending-dev&after=${start}`);
      const events = await feed.waitFor((e) => e.some((x) => x.json.data.id === writerId));
      expect(events.map((e) => e.json.data.id)).toEqual([lateId, markerId, writerId]);
      feed.close();
    } finally {
      writer.release();
      doomed.release();
    }
  });

  it('reads a pass that skipped many positions (a listed batch) like one of consecutive positions (runs)', async () => {
    const start = (await allEventIds()).at(-1) ?? 0;
    const lock = await db.pool.connect();
    try {
      // Holding the sequencer's lock: the servers' passes skip, so one pass (ours) sees everything.
      await lock.query('begin');
      await lock.query('select pg_advisory_xact_lock(7340032012)');
      const written: string[] = [];
      for (let i = 0; i < 6; i++) {
        await db.pool.query(`begin; insert into event_rows (type, data) values ('dss.stream.error', '{"n": -1}'); rollback`);
        const { rows } = await db.pool.query<{ pos: string }>(`insert into event_rows (type, data) values ('dss.stream.error', $1) returning pos`, [{ streamId: 'listed', n: i }]);
        written.push(rows[0]!.pos);
      }
      // Six committed runs of one: more than a pass writes as runs, so one listed batch.
      await lock.query('commit');
      await eventually(() => allEventIds(), (ids) => ids.filter((id) => id > start).length >= 6);
      const { rows: batches } = await db.pool.query<{ positions: string[] | null }>('select positions from event_batches where first_id > $1 order by first_id', [start]);
      expect(batches.map((b) => b.positions?.map(Number) ?? null)).toContainEqual(written.map(Number));
      const read = await readEvents(db.pool, start, null, { types: ['dss.stream.error'] }, 1_000);
      expect(read.map((e) => e.data.n)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(read.map((e) => e.id)).toEqual(read.map((_, i) => start + 1 + i));
      // Paging through it from the middle (a window that starts inside the batch) gives the rest, once each.
      expect((await readEvents(db.pool, start + 2, null, {}, 2)).map((e) => e.data.n)).toEqual([2, 3]);
    } finally {
      lock.release();
    }
  });

  it('filters by type, device, actuation and source, the same way live and when catching up', async () => {
    const start = (await allEventIds()).at(-1) ?? 0;
    const device = await connectAuthenticated(a.wsUrl, 'filter-dev', mint('filter-dev', { accountId: 'acct-f' }));
    const wanted = await post(a, 'filter-dev', 'acct-f');
    await device.next(5_000);
    device.send({ type: 'ack', id: wanted, statusCode: 500, reasonPhrase: 'Broken' });
    await post(b, 'filter-other');
    const filters: [string, EventFilter][] = [
      ['types=actuation.failed,device.connected', { types: ['actuation.failed', 'device.connected'] }],
      ['deviceId=filter-dev', { deviceId: 'filter-dev' }],
      [`actuationId=${wanted}`, { actuationId: wanted }],
      ['source=rest', { source: 'rest' }],
      ['source=dss', { source: 'dss' }],
    ];
    const live = await Promise.all(filters.map(([q]) => subscribe(a, `/v1/events?after=${start}&${q}`)));
    await eventually(() => allEventIds(), (ids) => ids.filter((id) => id > start).length >= 5);
    const all = await readEvents(db.pool, start, null, {}, 1_000);
    for (const [i, [query, filter]] of filters.entries()) {
      const expected = all.filter((e) => matchesFilter(e, filter)).map((e) => e.id);
      const fromSql = (await readEvents(db.pool, start, null, filter, 1_000)).map((e) => e.id);
      expect(fromSql, query).toEqual(expected);
      if (expected.length > 0) await live[i]!.waitFor((e) => e.length >= expected.length);
      expect(live[i]!.ids(), query).toEqual(expected);
    }
    expect(all.filter((e) => matchesFilter(e, { actuationId: wanted })).map((e) => e.type)).toEqual(['actuation.queued', 'actuation.sent', 'actuation.failed']);
    // Accounts (keys limited to accounts): the SQL and the live filter agree too.
    for (const accounts of [['acct-f'], ['nobody'], []]) {
      const expected = all.filter((e) => matchesFilter(e, { accounts })).map((e) => e.id);
      expect((await readEvents(db.pool, start, null, { accounts }, 1_000)).map((e) => e.id)).toEqual(expected);
    }
    expect(all.filter((e) => matchesFilter(e, { accounts: ['acct-f'] })).length).toBeGreaterThan(0);
    device.close();
  });

  it("files an event under its device's account in the registry, not the accountId a command names", async () => {
    // Without migration 0017 the events of this actuation carry the command's "globex" and a
    // key of acme (the device's account) would not see them, one of globex would: checked by
    // running this test against 0012's triggers (it fails on the first expectation).
    const put = await a.api('/v1/devices/acct-dev-1', { method: 'PUT', json: { accountId: 'acme' } });
    expect(put.status).toBe(201);
    const start = (await allEventIds()).at(-1) ?? 0;
    const id = await post(a, 'acct-dev-1', 'globex');
    const ofIt = await eventually(
      () => readEvents(db.pool, start, null, { actuationId: id }, 100),
      (events) => events.length >= 1,
    );
    expect(ofIt.map((e) => e.type)).toEqual(['actuation.queued']);
    expect((await readEvents(db.pool, start, null, { actuationId: id, accounts: ['acme'] }, 100)).map((e) => e.id)).toEqual(ofIt.map((e) => e.id));
    expect(await readEvents(db.pool, start, null, { actuationId: id, accounts: ['globex'] }, 100)).toEqual([]);
    // The payload still says what the command said (it is what the device was sent).
    expect(ofIt[0]!.data).toMatchObject({ deviceId: 'acct-dev-1', accountId: 'globex' });
  });

  it('refuses bad input: unknown types, malformed ids, ids not yet given', async () => {
    for (const [path, headers, field] of [
      ['/v1/events?types=actuation.nope', {}, 'types'],
      ['/v1/events?after=abc', {}, 'after'],
      ['/v1/events?after=999999999', {}, 'after'],
      ['/v1/events', { 'last-event-id': '-1' }, 'Last-Event-ID'],
      ['/v1/events?actuationId=x', {}, 'actuationId'],
    ] as const) {
      const res = await a.api(path, { headers });
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('VALIDATION_FAILED');
      expect(body.error.message.startsWith(field), body.error.message).toBe(true);
    }
  });

  it('keeps EVENTS_RETENTION_HOURS of events and answers 410 with the oldest id for an older position', async () => {
    const ids = await allEventIds();
    expect(ids.length).toBeGreaterThan(10);
    const cut = ids[5]!;
    await db.pool.query(`update event_rows set at = now() - interval '25 hours' where pos in (select pos from events where id <= $1)`, [cut]);
    const deleted = await eventRetentionPass({ pool: db.pool, retentionHours: 24, batchSize: 2, pauseMs: 1 });
    expect(deleted).toBe(6);
    expect((await allEventIds())[0]).toBe(cut + 1);
    const gone = await a.api(`/v1/events?after=${ids[0]}`);
    expect(gone.status).toBe(410);
    expect(gone.headers.get(OLDEST_EVENT_ID_HEADER)).toBe(String(cut + 1));
    expect(((await gone.json()) as { error: { code: string } }).error.code).toBe('EVENTS_GONE');
    // The event right before the oldest kept is still a valid position: nothing after it is lost.
    const ok = await subscribe(a, `/v1/events?after=${cut}`);
    expect(ok.status).toBe(200);
    await ok.waitFor((e) => e.length >= 1);
    expect(ok.ids()[0]).toBe(cut + 1);
    ok.close();
  });

  it('records DSS stream state changes in the transaction that records them', async () => {
    const feed = await subscribe(a, '/v1/events?types=dss.stream.connected,dss.stream.disconnected,dss.stream.error');
    await eventually(() => feed.comments, (c) => c.includes('connected'));
    const streamId = crypto.randomUUID();
    await db.pool.query(`insert into dss_streams (id, name, url, stream_key, enabled, holder_instance_id) values ($1, 'feed-stream', 'ws://x', 'k', false, 'feed-a')`, [streamId]);
    await db.pool.query('update dss_streams set connected = true where id = $1', [streamId]);
    await db.pool.query(`update dss_streams set errors = errors + 2, last_error = 'DSS_ERR_FRAME_LENGTH: x', last_seq = 7 where id = $1`, [streamId]);
    // A flush that adds no error and changes no state is no event.
    await db.pool.query('update dss_streams set events = events + 5 where id = $1', [streamId]);
    await db.pool.query('update dss_streams set connected = false where id = $1', [streamId]);
    const events = await feed.waitFor((e) => e.length >= 3);
    expect(events.map((e) => e.json)).toMatchObject([
      { type: 'dss.stream.connected', data: { streamId, name: 'feed-stream', instanceId: 'feed-a' } },
      { type: 'dss.stream.error', data: { streamId, errors: 2, lastError: 'DSS_ERR_FRAME_LENGTH: x', lastSeq: 7 } },
      { type: 'dss.stream.disconnected', data: { streamId, lastSeq: 7 } },
    ]);
    await db.pool.query('delete from dss_streams where id = $1', [streamId]);
    feed.close();
  });

  it('ends every stream with a final event when the server shuts down', async () => {
    const server = await startTestServer(db, { INSTANCE_ID: 'feed-closing' });
    const feed = await subscribe(server);
    await eventually(() => feed.comments, (c) => c.includes('connected'));
    await server.close();
    await eventually(() => feed.ended, (e) => e);
    expect(feed.events.at(-1)).toMatchObject({ event: 'dropped', json: { reason: 'shutting_down' } });
  });

  it('sends a heartbeat comment every EVENTS_HEARTBEAT_MS', async () => {
    const feed = await subscribe(a);
    await eventually(() => feed.comments, (c) => c.filter((x) => x === 'heartbeat').length >= 2, 10_000);
    feed.close();
  });
});

describe('change feed limits', () => {
  let small: TestServer;
  beforeAll(async () => {
    small = await startTestServer(db, { INSTANCE_ID: 'feed-small', EVENTS_SUBSCRIBER_BUFFER_BYTES: String(64 * 1024), EVENTS_MAX_SUBSCRIBERS: '2' });
  });
  afterAll(async () => {
    await small?.close();
  });

  it('drops a subscriber that stops reading, with a final event, instead of buffering without bound', async () => {
    const start = (await allEventIds()).at(-1) ?? 0;
    const slow = await subscribe(small, `/v1/events?after=${start}`);
    await eventually(() => slow.comments, (c) => c.includes('connected'));
    // Checked: without the bound (subscriber.ts checkBound) it is never dropped and this test fails.
    slow.pause();
    // ~24 MB of events, far beyond the loopback socket buffers and the 64 KiB bound.
    await db.pool.query(
      `insert into event_rows (type, data) select 'dss.stream.error', jsonb_build_object('streamId', 'slow', 'lastError', repeat('x', 8000), 'n', n) from generate_series(1, 3000) n`,
    );
    const closed = async () => {
      const text = await (await small.api('/metrics')).text();
      return /iotws_event_subscribers_closed_total\{reason="slow_subscriber"\} 1/.test(text);
    };
    await eventually(closed, (v) => v, 30_000, 200);
    slow.resume();
    await eventually(() => slow.ended, (e) => e, 15_000);
    // What it got is a prefix, in order, ended by the event saying why.
    const last = slow.events.at(-1)!;
    expect(last.event).toBe('dropped');
    expect(last.json).toMatchObject({ reason: 'slow_subscriber' });
    const got = slow.ids();
    expect(got.length).toBeLessThan(3000);
    expect(got).toEqual(got.map((_, i) => start + 1 + i));
    // It resumes where it was and gets the rest, once each.
    const resumed = await subscribe(small, '/v1/events', { 'last-event-id': slow.lastId()! });
    await resumed.waitFor((e) => e.length >= 3000 - got.length, 60_000);
    expect([...got, ...resumed.ids()]).toEqual(Array.from({ length: 3000 }, (_, i) => start + 1 + i));
    resumed.close();
  }, 120_000);

  it('serves at most EVENTS_MAX_SUBSCRIBERS subscribers per instance', async () => {
    await eventually(() => small.app.metrics.registry.getSingleMetricAsString('iotws_event_subscribers'), (t) => / 0$/m.test(t));
    const one = await subscribe(small);
    const two = await subscribe(small);
    const refused = await small.api('/v1/events');
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('TOO_MANY_SUBSCRIBERS');
    one.close();
    two.close();
  });
});

/**
 * The sequencer's pacing and the feed's reads, each on a database of its own with no server
 * (so no other sequencer passes): a thin wrapper around the real pool notes when each
 * statement starts.
 */
describe('change feed pacing', () => {
  let quiet: TestDatabase;
  const logger = makeLogger({ level: 'silent' });
  const running: EventSequencer[] = [];
  beforeAll(async () => {
    quiet = await createTestDatabase();
  });
  afterAll(async () => {
    for (const s of running) await s.stop();
    await quiet?.drop();
  });

  /** The pool, noting each statement by name (or text) when it starts and how many are in flight. */
  function notingPool() {
    const starts: { name: string; at: number; values: unknown[] }[] = [];
    let inFlight = 0;
    const pool = {
      query(config: string | { name?: string; text: string; values?: unknown[] }, values?: unknown[]) {
        const c = typeof config === 'string' ? { text: config, values } : config;
        starts.push({ name: c.name ?? c.text, at: performance.now(), values: c.values ?? [] });
        inFlight++;
        return quiet.pool.query(c).finally(() => inFlight--);
      },
    } as unknown as Pool;
    return { pool, starts, inFlight: () => inFlight };
  }

  function sequencer(options: { intervalMs: number; minGapMs: number }) {
    const noted = notingPool();
    const passes: SequencingPass[] = [];
    const s = startEventSequencer({ pool: noted.pool, logger, batchSize: 1_000, ...options, onPass: (p) => passes.push(p) });
    running.push(s);
    return { s, passes, passStarts: () => noted.starts.filter((q) => q.name.startsWith('events_sequence_')).map((q) => q.at) };
  }

  const writeEvent = (n: number) => quiet.pool.query(`insert into event_rows (type, data) values ('dss.stream.error', $1)`, [{ streamId: 'pacing', n }]);
  const unnumbered = async () => (await quiet.pool.query<{ n: number }>('select count(*)::int as n from event_rows where pos > (select high_pos from event_sequencer)')).rows[0]!.n;

  it('numbers a committed event when nudged, not at the next poll, and nudged passes start at least EVENTS_SEQUENCER_MIN_GAP_MS apart', async () => {
    // A poll a minute: only a nudge can number the event within the wait below
    // (checked: with nudge() doing nothing, the first wait times out).
    const { s, passes, passStarts } = sequencer({ intervalMs: 60_000, minGapMs: 50 });
    await eventually(() => passes.length, (n) => n >= 1);
    await writeEvent(1);
    s.nudge();
    await eventually(unnumbered, (n) => n === 0, 5_000);

    // Nudged every 2 ms for 1 s: a pass per gap at most, each starting ≥ 50 ms after the previous one
    // (checked: a nudge planning its pass at once fails the gap assertion).
    const from = passStarts().length;
    const until = performance.now() + 1_000;
    for (let i = 0; performance.now() < until; i++) {
      if (i % 20 === 0) await writeEvent(i);
      s.nudge();
      await new Promise((r) => setTimeout(r, 2));
    }
    await eventually(unnumbered, (n) => n === 0, 5_000);
    await s.stop();
    const starts = passStarts().slice(from - 1);
    // Timers may fire up to a millisecond early (libuv rounds to whole ms).
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(48);
    expect(starts.length - 1).toBeLessThanOrEqual(Math.ceil(1_000 / 50) + 2);
    expect(starts.length - 1).toBeGreaterThanOrEqual(2);
  });

  it('tries a nudged pass again after the gap when another pass held the lock', async () => {
    const { s, passes } = sequencer({ intervalMs: 60_000, minGapMs: 20 });
    await eventually(() => passes.length, (n) => n >= 1);
    const lock = await quiet.pool.connect();
    try {
      await lock.query('begin');
      await lock.query('select pg_advisory_xact_lock(7340032012)');
      await writeEvent(2);
      const seen = passes.length;
      s.nudge();
      await eventually(() => passes.slice(seen), (p) => p.some((x) => !x.locked));
      await lock.query('commit');
    } finally {
      lock.release();
    }
    // Checked: without the retry (the nudge forgotten when the pass found the lock taken) this waits for the minute's poll and times out.
    await eventually(unnumbered, (n) => n === 0, 5_000);
    await s.stop();
  });

  /** A feed on the quiet database with one subscriber (an SSE client on a bare HTTP server), its live reads counted. */
  async function feedWithSubscriber() {
    const noted = notingPool();
    const feed = makeEventFeed({ pool: noted.pool, logger, maxSubscribers: 10, subscriberBufferBytes: 1024 * 1024, heartbeatMs: 60_000, stallMs: 10_000, pollMs: 60_000 });
    await feed.start();
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': connected\n\n');
      feed.subscribe(res, {}, 0);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await openSse((server.address() as AddressInfo).port, '/');
    open.push(client);
    await client.waitFor(() => feed.subscriberCount() === 1);
    const settled = () => eventually(() => noted.inFlight(), (n) => n === 0);
    await settled();
    return {
      feed,
      client,
      settled,
      /** Live reads (no upTo) started so far. */
      liveReads: () => noted.starts.filter((q) => q.name.startsWith('events_read_') && q.values[1] === null).length,
      received: (n: number) => client.events.filter((x) => x.json?.data?.n === n).length,
      async close() {
        client.close();
        feed.close();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  it("reads a pass's events once: this instance's pass tells the feed, its NOTIFY then reads nothing; reread() reads", async () => {
    const f = await feedWithSubscriber();
    try {
      const before = f.liveReads();
      await writeEvent(3);
      const pass = await sequenceEvents(quiet.pool, 100);
      expect(pass.sequenced).toBeGreaterThan(0);
      f.feed.notified(pass.lastId); // this instance's pass
      f.feed.notified(pass.lastId); // its NOTIFY
      await f.client.waitFor(() => f.received(3) > 0);
      await f.settled();
      // Checked: without the skip in `notified` the NOTIFY reads again (before + 2).
      expect(f.liveReads()).toBe(before + 1);

      f.feed.reread();
      expect(f.liveReads()).toBe(before + 2);
      await f.settled();
      expect(f.received(3)).toBe(1);
    } finally {
      await f.close();
    }
  });

  it('fans out the events its own pass returned without a read, and reads when they do not follow its position', async () => {
    const f = await feedWithSubscriber();
    try {
      const before = f.liveReads();
      await writeEvent(4);
      const pass = await sequenceAndReadEvents(quiet.pool, 100, true);
      expect(pass.events?.map((e) => e.data.n)).toEqual([4]);
      f.feed.passed(pass);
      f.feed.notified(pass.lastId); // its NOTIFY
      await f.client.waitFor(() => f.received(4) > 0);
      await f.settled();
      expect(f.liveReads()).toBe(before);

      // Another instance's pass (5) the feed was not told of, then ours (6): ours does not follow
      // the feed's position, so it reads, and gets both, in order, once each.
      // Checked: without the position check the feed offers 6 alone and never reads 5 (this test fails).
      await writeEvent(5);
      await sequenceEvents(quiet.pool, 100);
      await writeEvent(6);
      const ours = await sequenceAndReadEvents(quiet.pool, 100, true);
      f.feed.passed(ours);
      await f.client.waitFor(() => f.received(6) > 0);
      await f.settled();
      expect(f.liveReads()).toBe(before + 1);
      const ns = f.client.events.map((x) => x.json.data.n).filter((n) => n === 4 || n === 5 || n === 6);
      expect(ns).toEqual([4, 5, 6]);
      const ids = f.client.ids();
      expect(ids).toEqual([...new Set(ids)].sort((x, y) => x - y));

      // Without read: the figures only.
      await writeEvent(7);
      const plain = await sequenceAndReadEvents(quiet.pool, 100, false);
      expect(plain).toMatchObject({ locked: true, sequenced: 1 });
      expect(plain.events).toBeUndefined();
    } finally {
      await f.close();
    }
  });
});
