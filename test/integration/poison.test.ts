/**
 * One bad item must not sink the others in any batcher (group commit puts strangers in
 * one transaction). Each test drives an item PostgreSQL refuses (U+0000, a lone
 * surrogate) into a real batcher beside valid items of other devices, below the edge
 * validation that normally refuses it first, and checks that every valid item commits
 * and only the culprit fails. Then the edges: the same input from a device or a REST
 * caller, at the same moment as many legitimate ones.
 *
 * How these were shown to fail without the mechanism: with the split removed from
 * makeBatcher (a failing batch rejects all its items), every "beside valid ones" test
 * here fails (all or about half the valid items fail with the culprit's error); with
 * `isStorableIdentity` / the `reasonPhrase` check removed from the gateway and protocol,
 * the device tests fail (500/1011 instead of 401/1008 and 1003).
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyAcks, type AckById, type AckOutcome } from '../../src/actuations/transitions-sql.js';
import { makeDispatcher, type Dispatcher } from '../../src/actuations/dispatcher.js';
import { makeSubmitter, type Submitter } from '../../src/actuations/submitter.js';
import type { NewActuation, SubmitResult } from '../../src/actuations/types.js';
import { BatchTimeoutError, makeBatcher } from '../../src/db/batcher.js';
import { makeSessionOpener } from '../../src/gateway/session-opener.js';
import type { OpenedSession } from '../../src/gateway/sessions-sql.js';
import { makeLogger } from '../../src/logger.js';
import { connectAuthenticated, connectDevice, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

const ctx = useTestServer();
const instanceId = `poison-${process.pid}`;
let dispatcher: Dispatcher;
let submitter: Submitter;

beforeAll(() => {
  // The real submitter and dispatcher of a second instance on the test database (no devices connected to it).
  dispatcher = makeDispatcher({ pool: ctx.db.pool, logger: makeLogger({ level: 'silent' }), instanceId, backlogRate: 500, redeliverUnacked: true, pollIntervalMs: 60_000, maxBufferedBytes: 1024 * 1024, databaseTimeoutMs: 5_000 });
  submitter = makeSubmitter({ pool: ctx.db.pool, instanceId, defaultTtlSeconds: 3600, maxQueuedPerDevice: 1000, maxBatchSize: 500, flushTimeoutMs: 10_000, delivery: dispatcher });
});
afterAll(async () => {
  await submitter?.drain();
  await dispatcher?.close();
});

const actuation = (deviceId: string, over: Partial<NewActuation> = {}): NewActuation => ({
  deviceId,
  componentId: 'led',
  command: 'SET',
  params: [{ name: 'on', value: '1' }],
  source: { kind: 'rest', caller: 'test', requestId: crypto.randomUUID() },
  ...over,
});

async function rowCount(deviceIdPrefix: string): Promise<number> {
  const { rows } = await ctx.db.pool.query<{ n: number }>('select count(*)::int as n from actuations where device_id like $1', [`${deviceIdPrefix}%`]);
  return rows[0]!.n;
}

/** The SQLSTATE of a rejection: PostgreSQL's own error for the culprit, not someone else's. */
function sqlState(outcome: PromiseSettledResult<unknown>): string | undefined {
  return outcome.status === 'rejected' ? (outcome.reason as { code?: string }).code : undefined;
}

describe('a bad item beside valid ones, below the edge validation', () => {
  it('single submissions: all 200 valid ones of other devices commit, only the culprit fails', async () => {
    const valid = Array.from({ length: 200 }, (_, i) => submitter.submit(actuation(`single-ok-${i}`)));
    const bad = submitter.submit(actuation('single-bad', { componentId: 'c\u0000' }));
    const outcomes = await Promise.allSettled([...valid, bad]);
    const failed = outcomes.filter((o) => o.status === 'rejected');
    expect(failed, JSON.stringify(failed.map(sqlState))).toHaveLength(1);
    expect(sqlState(outcomes[200]!)).toMatch(/^22/);
    expect(outcomes.slice(0, 200).every((o) => o.status === 'fulfilled' && (o.value as SubmitResult).outcome === 'created')).toBe(true);
    expect(await rowCount('single-ok-')).toBe(200);
    expect(await rowCount('single-bad')).toBe(0);
  });

  it('bulk: 1,000 items in one go with two bad ones (U+0000 in a param, a lone surrogate): only those two fail', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => actuation(`bulk-${i}`));
    items[10] = actuation('bulk-10', { params: [{ name: 'p', value: { nested: ['ok', 'x\u0000'] } }] });
    items[700] = actuation('bulk-700', { command: 'SET\ud800' });
    const outcomes = await Promise.allSettled(items.map((a) => submitter.submit(a)));
    outcomes.forEach((o, i) => {
      if (i === 10 || i === 700) expect(sqlState(o), `item ${i}`).toMatch(/^22/);
      else expect(o.status, `item ${i}: ${sqlState(o)}`).toBe('fulfilled');
    });
    expect(await rowCount('bulk-')).toBe(998);
  });

  it('acks: a bad reasonPhrase does not keep another device\'s 20 acks from being recorded', async () => {
    const { server, db } = ctx;
    const device = await connectAuthenticated(server.wsUrl, 'ack-good', mint('ack-good'));
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await server.api('/v1/devices/ack-good/actuations', { method: 'POST', json: { componentId: 'led', command: 'SET', params: [] } });
        expect(res.status).toBe(202);
        ids.push(((await res.json()) as { id: string }).id);
      }
      for (let i = 0; i < 20; i++) expect((await device.next()).code).toBe(1024);
      // The batcher acks.ts builds (same flush, same options), fed directly: one bad ack among good ones.
      const acks = makeBatcher<AckById, AckOutcome>((batch) => applyAcks(db.pool, batch), { maxBatchSize: 500, maxConcurrent: 1 });
      const bad = acks.add({ deviceId: 'ack-bad', id: crypto.randomUUID(), statusCode: 200, reasonPhrase: 'bad\u0000' });
      const good = ids.map((id) => acks.add({ deviceId: 'ack-good', id, statusCode: 200, reasonPhrase: 'OK' }));
      const outcomes = await Promise.allSettled([bad, ...good]);
      expect(sqlState(outcomes[0]!)).toMatch(/^22/);
      expect(outcomes.slice(1).map((o) => (o.status === 'fulfilled' ? o.value.outcome : sqlState(o)))).toEqual(ids.map(() => 'acked'));
      const { rows } = await db.pool.query<{ status: string }>('select status from actuations where id = any($1::uuid[])', [ids]);
      expect(rows.map((r) => r.status)).toEqual(ids.map(() => 'acked'));
    } finally {
      device.close();
    }
  });

  it('session opening: 100 devices and one unstorable device id at the same moment: 100 sessions open', async () => {
    const opener = makeSessionOpener({ pool: ctx.db.pool, instanceId, flushTimeoutMs: 10_000 });
    const requests = Array.from({ length: 100 }, (_, i) => ({ deviceId: `open-ok-${i}`, accountId: null, remoteAddress: null }));
    const outcomes = await Promise.all([
      opener.add({ deviceId: 'nul\u0000id', accountId: null, remoteAddress: null }),
      ...requests.map((r) => opener.add(r)),
    ]);
    expect(outcomes[0]).toBeInstanceOf(Error);
    expect((outcomes[0] as { code?: string }).code).toMatch(/^22/);
    expect(outcomes.slice(1).filter((o) => o instanceof Error)).toEqual([]);
    expect(new Set(outcomes.slice(1).map((o) => (o as OpenedSession).sessionId)).size).toBe(100);
    const { rows } = await ctx.db.pool.query<{ n: number }>(`select count(*)::int as n from device_sessions where device_id like 'open-ok-%' and disconnected_at is null`);
    expect(rows[0]!.n).toBe(100);
  });
});

describe('the same input at the edges, beside legitimate traffic', () => {
  it('REST: one POST with "c\\u0000" among 200 valid POSTs for other devices: the 200 get 202', async () => {
    const { server } = ctx;
    const post = (deviceId: string, componentId: string) =>
      server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: { componentId, command: 'SET', params: [] } });
    // The bad one in the middle, so that it shares a batch with valid ones (the first POST would flush alone).
    const ok = (i: number) => post(`rest-ok-${i}`, 'led');
    const sent = [...Array.from({ length: 100 }, (_, i) => ok(i)), post('rest-bad', 'c\u0000'), ...Array.from({ length: 100 }, (_, i) => ok(100 + i))];
    const responses = await Promise.all(sent);
    const [bad] = responses.splice(100, 1);
    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 200 }, () => 202));
    // 400 once the REST edge validates the body (src/http); without it, the culprit's own flush fails (500). Never 202.
    expect([400, 500]).toContain(bad!.status);
    expect(await rowCount('rest-ok-')).toBe(200);
    expect(await rowCount('rest-bad')).toBe(0);
  });

  it('device: a validly signed token for "nul\\u0000id" gets 401 and 1008 while 200 devices authenticate at the same moment', async () => {
    const { server } = ctx;
    const n = 200;
    const sockets: DeviceClient[] = await Promise.all(Array.from({ length: n + 1 }, () => connectDevice(server.wsUrl)));
    try {
      const [bad, ...good] = sockets;
      bad!.send({ type: 'device', deviceId: 'nul\u0000id', deviceToken: mint('nul\u0000id') });
      good.forEach((d, i) => d.send({ type: 'device', deviceId: `conn-ok-${i}`, deviceToken: mint(`conn-ok-${i}`) }));
      const answers = await Promise.all(good.map((d) => d.next(15_000)));
      expect(answers.map((a) => a.code)).toEqual(good.map(() => 200));
      expect(await bad!.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
      expect((await bad!.closed).code).toBe(1008);
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it('device: acks with an unstorable reasonPhrase are refused (401 wrong format, 1003); another device\'s acks are recorded', async () => {
    const { server, db } = ctx;
    const good = await connectAuthenticated(server.wsUrl, 'edge-ack-good', mint('edge-ack-good'));
    const bad = await connectAuthenticated(server.wsUrl, 'edge-ack-bad', mint('edge-ack-bad'));
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await server.api('/v1/devices/edge-ack-good/actuations', { method: 'POST', json: { componentId: 'led', command: 'SET', params: [] } });
        ids.push(((await res.json()) as { id: string }).id);
      }
      for (let i = 0; i < 20; i++) expect((await good.next()).code).toBe(1024);
      for (let i = 0; i < 20; i++) bad.send({ type: 'ack', id: crypto.randomUUID(), statusCode: 200, reasonPhrase: 'bad\u0000' });
      for (const id of ids) good.send({ type: 'ack', id, statusCode: 200, reasonPhrase: 'OK' });
      expect(await bad.next()).toEqual({ code: 401, content: 'Wrong message format' });
      expect((await bad.closed).code).toBe(1003);
      const statuses = await eventually(
        async () => (await db.pool.query<{ status: string }>('select status from actuations where id = any($1::uuid[])', [ids])).rows.map((r) => r.status),
        (s) => s.length === 20 && s.every((x) => x === 'acked'),
      );
      expect(statuses).toEqual(ids.map(() => 'acked'));
    } finally {
      good.close();
      bad.close();
    }
  });
});

describe('the flush deadline, on a real database', () => {
  it('session opening blocked on a lock: the devices fail at the deadline, the next batch opens, late rows are closed', async () => {
    const { db } = ctx;
    const opener = makeSessionOpener({ pool: db.pool, instanceId, flushTimeoutMs: 300 });
    // Another transaction holds the table: the opening statement waits, as on a hung connection.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table device_sessions in exclusive mode');
      const started = Date.now();
      const blocked = await Promise.allSettled([opener.add({ deviceId: 'late-1', accountId: null, remoteAddress: null }), opener.add({ deviceId: 'late-2', accountId: null, remoteAddress: null })]);
      expect(blocked.map((o) => o.status === 'rejected' && o.reason instanceof BatchTimeoutError)).toEqual([true, true]);
      expect(Date.now() - started).toBeLessThan(3_000);
      // The slot is free: the next device's statement starts while the first still waits (two waiting on the lock).
      const next = opener.add({ deviceId: 'late-next', accountId: null, remoteAddress: null });
      const waiting = await eventually(
        async () => (await db.pool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0]!.n,
        (n) => n >= 2,
        2_000,
        10,
      );
      // At least the first batch and the next (a loaded machine may let the next one's own deadline pass and retry).
      expect(waiting).toBeGreaterThanOrEqual(2);
      await blocker.query('commit');
      await next.catch(() => undefined); // its own deadline may pass too on a loaded machine; only the rows matter below
    } finally {
      blocker.release();
    }
    // The blocked batch committed once the lock went; nobody uses those rows, so they are closed.
    const rows = await eventually(
      async () => (await db.pool.query<{ device_id: string; close_code: number | null }>(`select device_id, close_code from device_sessions where device_id in ('late-1', 'late-2') order by device_id`)).rows,
      (r) => r.length === 2 && r.every((x) => x.close_code !== null),
    );
    expect(rows).toEqual([
      { device_id: 'late-1', close_code: 1011 },
      { device_id: 'late-2', close_code: 1011 },
    ]);
  });
});
