import { describe, expect, it } from 'vitest';
import { connectAuthenticated, type DeviceClient, type ServerMessage } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, useTestServer } from '../helpers/server.js';

const t = useTestServer({ SWEEP_INTERVAL_MS: '100', BACKLOG_RATE: '10000', DISPATCH_POLL_MS: '500' });

const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

async function post(deviceId: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: { ...command, ...body }, headers });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function get(id: string) {
  const res = await t.server.api(`/v1/actuations/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

async function statusOf(id: string): Promise<string> {
  return (await get(id)).status;
}

async function connect(deviceId: string): Promise<DeviceClient> {
  return connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
}

/** Collects actuation messages until `count` arrived (fails the test if they do not). */
async function receive(device: DeviceClient, count: number, timeoutMs = 5_000): Promise<ServerMessage[]> {
  const got: ServerMessage[] = [];
  while (got.length < count) got.push(await device.next(timeoutMs));
  return got;
}

/** Waits a little and asserts nothing more arrived (absence has no event to wait for: a window it is). */
async function expectSilence(device: DeviceClient, ms = 400) {
  await new Promise((r) => setTimeout(r, ms));
  expect(device.pending()).toEqual([]);
}

describe('durable actuations', () => {
  it('sends at once, in the transaction that records it, to a device live here with nothing queued', async () => {
    const device = await connect('direct-1');
    await eventually(() => t.db.pool.query(`select 1 from device_sessions where device_id = 'direct-1' and disconnected_at is null`), (r) => r.rowCount === 1);
    // Out of the backlog lane (nothing was pending): the lane has no outside view, so a wait of two
    // backlog ticks; too short and the POST below answers "queued", so this cannot pass by accident.
    await new Promise((r) => setTimeout(r, 200));
    const res = await post('direct-1');
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'sent', seq: 1 });
    expect(await device.next()).toMatchObject({ code: 1024, id: res.body.id, seq: 1 });
    const record = await get(res.body.id);
    expect(record).toMatchObject({ status: 'sent', attempts: 1 });
    expect(record.history.map((h: { status: string }) => h.status)).toEqual(['queued', 'sent']);
    expect(record.history[1]).toMatchObject({ attempt: 1, instanceId: expect.any(String), sessionId: expect.any(Number) });
    device.send({ type: 'ack', id: res.body.id, statusCode: 200 });
    expect(await eventually(() => statusOf(res.body.id), (s) => s === 'acked')).toBe('acked');
    device.close();
  });

  it('never lets a later actuation overtake one that another transaction holds locked', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await post('order-lock')).body.id);
    const locker = await t.db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from actuations where id = $1 for update', [ids[0]]);
      const device = await connect('order-lock');
      // The first is locked elsewhere (as by a cancel in progress): nothing may go out before it.
      await expectSilence(device, 800);
      await locker.query('rollback');
      const got = await receive(device, 3);
      expect(got.map((m) => m.id)).toEqual(ids);
      device.close();
    } finally {
      locker.release();
    }
  });

  it('queues for an offline device and delivers in seq order when it connects', async () => {
    const created: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await post('offline-1', { params: [{ name: 'n', value: i }] });
      expect(res.status).toBe(202);
      expect(res.body).toMatchObject({ status: 'queued', seq: i + 1, deviceId: 'offline-1' });
      expect(typeof res.body.createdAt).toBe('string');
      expect(typeof res.body.expiresAt).toBe('string');
      created.push(res.body.id as string);
    }
    const device = await connect('offline-1');
    const messages = await receive(device, 3);
    expect(messages.map((m) => m.id)).toEqual(created);
    expect(messages.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(messages[2]).toMatchObject({ code: 1024, content: { type: 'command', transport: 'ws', content: { deviceId: 'offline-1', params: [{ name: 'n', value: 2 }] } } });
    const record = await eventually(() => get(created[0]!), (r) => r.status === 'sent');
    expect(record).toMatchObject({ status: 'sent', attempts: 1, lastInstanceId: t.server.config.instanceId, source: { kind: 'rest', caller: 'tester' } });
    expect(record.history.map((h: { status: string }) => h.status)).toEqual(['queued', 'sent']);
    device.close();
  });

  it('moves sent to acked or failed on the device ack, and records a late ack without reviving', async () => {
    const device = await connect('acker-1');
    const ok = await post('acker-1');
    const bad = await post('acker-1');
    const [m1, m2] = await receive(device, 2);
    device.send({ type: 'ack', id: m1!.id, statusCode: 200, reasonPhrase: 'OK' });
    device.send({ type: 'ack', id: m2!.id, statusCode: 500, reasonPhrase: 'LED broken' });
    expect(await eventually(() => statusOf(ok.body.id), (s) => s === 'acked')).toBe('acked');
    const failed = await eventually(() => get(bad.body.id), (r) => r.status === 'failed');
    expect(failed).toMatchObject({ status: 'failed', statusCode: 500, reasonPhrase: 'LED broken' });

    device.send({ type: 'ack', id: m2!.id, statusCode: 200 });
    const late = await eventually(() => get(bad.body.id), (r) => r.history.some((h: { event?: string }) => h.event === 'late_ack'));
    expect(late.status).toBe('failed');
    expect(late.history.at(-1)).toMatchObject({ event: 'late_ack', statusCode: 200, statusWas: 'failed' });
    device.close();
  });

  it('acks a whole prefix with upTo', async () => {
    const device = await connect('prefix-1');
    const ids = [(await post('prefix-1')).body.id, (await post('prefix-1')).body.id, (await post('prefix-1')).body.id];
    const messages = await receive(device, 3);
    device.send({ type: 'ack', upTo: messages[1]!.seq });
    await eventually(() => statusOf(ids[1]), (s) => s === 'acked');
    expect([await statusOf(ids[0]), await statusOf(ids[1]), await statusOf(ids[2])]).toEqual(['acked', 'acked', 'sent']);
    device.close();
  });

  it('applies a device\'s acks in the order it sent them: an ack by id, then upTo over it', async () => {
    const device = await connect('prefix-2');
    const ids = [(await post('prefix-2')).body.id, (await post('prefix-2')).body.id];
    const messages = await receive(device, 2);
    // Back to back: the failure report must land before the prefix ack that covers it.
    device.send({ type: 'ack', id: ids[0], statusCode: 500, reasonPhrase: 'Overheated' });
    device.send({ type: 'ack', upTo: messages[1]!.seq });
    await eventually(() => statusOf(ids[1]), (s) => s === 'acked');
    expect(await get(ids[0])).toMatchObject({ status: 'failed', statusCode: 500, reasonPhrase: 'Overheated' });
    device.close();
  });

  it("ignores an ack for another device's actuation", async () => {
    const owner = await connect('owner-1');
    const intruder = await connect('intruder-1');
    const { body } = await post('owner-1');
    const [message] = await receive(owner, 1);
    expect(message!.id).toBe(body.id);
    const own = await post('intruder-1');
    await receive(intruder, 1);
    // The intruder's acks are handled in order: once its own (later) ack is recorded, the bogus one was handled.
    intruder.send({ type: 'ack', id: body.id, statusCode: 200 });
    intruder.send({ type: 'ack', id: own.body.id, statusCode: 200 });
    expect(await eventually(() => statusOf(own.body.id), (s) => s === 'acked')).toBe('acked');
    const record = await get(body.id);
    expect(record.status).toBe('sent');
    expect(record.history.some((h: { event?: string }) => h.event === 'late_ack')).toBe(false);
    owner.close();
    intruder.close();
  });

  it('cancels only queued actuations', async () => {
    const queued = await post('cancel-1');
    const res = await t.server.api(`/v1/actuations/${queued.body.id}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: queued.body.id, status: 'cancelled' });
    const again = await t.server.api(`/v1/actuations/${queued.body.id}`, { method: 'DELETE' });
    expect(again.status).toBe(409);
    expect(((await again.json()) as any).error.code).toBe('CONFLICT');
    const missing = await t.server.api('/v1/actuations/00000000-0000-4000-8000-000000000000', { method: 'DELETE' });
    expect(missing.status).toBe(404);

    const device = await connect('cancel-1');
    await expectSilence(device);
    const sent = await post('cancel-1');
    await receive(device, 1);
    await eventually(() => statusOf(sent.body.id), (s) => s === 'sent');
    expect((await t.server.api(`/v1/actuations/${sent.body.id}`, { method: 'DELETE' })).status).toBe(409);
    device.close();
  });

  it('expires queued actuations after their TTL; they are never delivered', async () => {
    const { body } = await post('ttl-1', { ttlSeconds: 1 });
    const never = await post('ttl-1', { ttlSeconds: 0 });
    expect(never.body.expiresAt).toBeNull();
    expect(await eventually(() => statusOf(body.id), (s) => s === 'expired', 5_000)).toBe('expired');
    const device = await connect('ttl-1');
    const [message] = await receive(device, 1);
    expect(message!.id).toBe(never.body.id);
    await expectSilence(device);
    device.close();
  });

  it('times out a sent actuation that is not acked within ackTimeoutSeconds', async () => {
    const device = await connect('slow-1');
    const { body } = await post('slow-1', { ackTimeoutSeconds: 1 });
    await receive(device, 1);
    const record = await eventually(() => get(body.id), (r) => r.status === 'timed_out', 5_000);
    expect(record.status).toBe('timed_out');
    expect(record.history.map((h: { status: string }) => h.status)).toEqual(['queued', 'sent', 'timed_out']);
    device.send({ type: 'ack', id: body.id, statusCode: 200 });
    await eventually(() => get(body.id), (r) => r.history.some((h: { event?: string }) => h.event === 'late_ack'));
    expect(await statusOf(body.id)).toBe('timed_out');
    device.close();
  });

  it('returns the original actuation for a repeated Idempotency-Key of the same device', async () => {
    const first = await post('idem-1', {}, { 'Idempotency-Key': 'order-42' });
    const second = await post('idem-1', { command: 'different' }, { 'Idempotency-Key': 'order-42' });
    const otherDevice = await post('idem-2', {}, { 'Idempotency-Key': 'order-42' });
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    expect(otherDevice.status).toBe(202);
    expect(otherDevice.body.id).not.toBe(first.body.id);
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => post('idem-3', {}, { 'Idempotency-Key': 'same' })));
    expect(new Set(concurrent.map((r) => r.body.id)).size).toBe(1);
    expect(concurrent.filter((r) => r.status === 202)).toHaveLength(1);
    const bad = await post('idem-1', {}, { 'Idempotency-Key': 'has space' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^Idempotency-Key/);
  });

  it('lets the latest actuation with a collapseKey supersede queued older ones', async () => {
    const a = await post('collapse-1', { collapseKey: 'led', params: [{ name: 'LED', value: '1' }] });
    const b = await post('collapse-1', { collapseKey: 'led', params: [{ name: 'LED', value: '0' }] });
    const other = await post('collapse-1', { collapseKey: 'fan' });
    const c = await post('collapse-1', { collapseKey: 'led', params: [{ name: 'LED', value: '1' }] });
    expect(await get(a.body.id)).toMatchObject({ status: 'superseded', supersededBy: b.body.id });
    expect(await get(b.body.id)).toMatchObject({ status: 'superseded', supersededBy: c.body.id });
    const device = await connect('collapse-1');
    const messages = await receive(device, 2);
    expect(messages.map((m) => m.id)).toEqual([other.body.id, c.body.id]);
    await expectSilence(device);
    device.close();
  });

  it('keeps creation order under concurrent posts to a connected device, seq gap-free', async () => {
    const device = await connect('order-1');
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => post('order-1', { params: [{ name: 'i', value: i }] })));
    expect(results.every((r) => r.status === 202)).toBe(true);
    const bySeq = new Map(results.map((r) => [r.body.seq as number, r.body.id as string]));
    expect([...bySeq.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const messages = await receive(device, 100);
    expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(messages.map((m) => m.id)).toEqual(messages.map((m) => bySeq.get(m.seq!)));
    await expectSilence(device, 200);
    device.close();
  });

  it('refuses with 429 beyond MAX_QUEUED_PER_DEVICE and keeps what is queued', async () => {
    const limited = await startTestServer(t.db, { MAX_QUEUED_PER_DEVICE: '3' });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) {
        const res = await limited.api('/v1/devices/full-1/actuations', { method: 'POST', json: command });
        statuses.push(res.status);
        if (res.status === 429) expect(((await res.json()) as any).error).toMatchObject({ code: 'QUEUE_FULL' });
      }
      expect(statuses).toEqual([202, 202, 202, 429]);
      const list = (await (await limited.api('/v1/devices/full-1/actuations?status=queued')).json()) as any;
      expect(list.items).toHaveLength(3);
    } finally {
      await limited.close();
    }
  });

  it('answers each item of a bulk submission on its own', async () => {
    const res = await t.server.api('/v1/actuations', {
      method: 'POST',
      json: [
        { deviceId: 'bulk-1', ...command },
        { deviceId: 'bulk-2', ...command, idempotencyKey: 'k1' },
        { deviceId: 'bulk-2', ...command, idempotencyKey: 'k1' },
        { deviceId: 'bulk-3', command: 'x' },
      ],
    });
    expect(res.status).toBe(200);
    const { results } = (await res.json()) as { results: any[] };
    expect(results.map((r) => r.status)).toEqual([202, 202, 200, 400]);
    expect(results[2].actuation.id).toBe(results[1].actuation.id);
    expect(results[3].error.message).toMatch(/componentId/);
    const tooMany = await t.server.api('/v1/actuations', { method: 'POST', json: Array.from({ length: 1001 }, () => ({ deviceId: 'x', ...command })) });
    expect(tooMany.status).toBe(400);
  });

  it('lists a device’s actuations newest first with status filter and cursor', async () => {
    for (let i = 0; i < 5; i++) await post('list-1');
    const page1 = (await (await t.server.api('/v1/devices/list-1/actuations?limit=2')).json()) as any;
    expect(page1.items.map((a: any) => a.seq)).toEqual([5, 4]);
    const page2 = (await (await t.server.api(`/v1/devices/list-1/actuations?limit=2&cursor=${page1.nextCursor}`)).json()) as any;
    expect(page2.items.map((a: any) => a.seq)).toEqual([3, 2]);
    const page3 = (await (await t.server.api(`/v1/devices/list-1/actuations?limit=2&cursor=${page2.nextCursor}`)).json()) as any;
    expect(page3.items.map((a: any) => a.seq)).toEqual([1]);
    expect(page3.nextCursor).toBeNull();
    const sent = (await (await t.server.api('/v1/devices/list-1/actuations?status=sent')).json()) as any;
    expect(sent.items).toEqual([]);
    const badStatus = await t.server.api('/v1/devices/list-1/actuations?status=bogus');
    expect(badStatus.status).toBe(400);
  });

  it('re-sends unacked actuations on reconnect only to devices that ack', async () => {
    // A device that acks: the unacked one comes again on reconnect, with the same id and seq.
    let device = await connect('redeliver-1');
    await post('redeliver-1');
    const [first] = await receive(device, 1);
    device.send({ type: 'ack', id: first!.id, statusCode: 200 });
    await eventually(() => statusOf(first!.id!), (s) => s === 'acked');
    const { body } = await post('redeliver-1');
    const [unacked] = await receive(device, 1);
    expect(unacked!.id).toBe(body.id);
    device.close();
    await device.closed;
    device = await connect('redeliver-1');
    const [again] = await receive(device, 1);
    expect(again).toMatchObject({ id: body.id, seq: unacked!.seq });
    expect((await eventually(() => get(body.id), (r) => r.attempts === 2)).attempts).toBe(2);
    device.close();

    // A legacy device that never acks: sent means sent, no duplicates after reconnects.
    let legacy = await connect('legacy-1');
    await post('legacy-1');
    await receive(legacy, 1);
    legacy.close();
    await legacy.closed;
    legacy = await connect('legacy-1');
    await expectSilence(legacy);
    legacy.close();
  });

  it('re-sends an earlier session\'s unacked actuation once the device\'s first ack is recorded (its first acks were lost)', async () => {
    // As when the instance holding a new device dies before recording its acks: on reconnect
    // the device is not yet known to ack, so nothing is re-sent; its first recorded ack must
    // bring the earlier actuation again (without deviceAcked it stays sent until it expires).
    let device = await connect('first-ack-lost');
    const { body: lost } = await post('first-ack-lost');
    const [first] = await receive(device, 1);
    expect(first!.id).toBe(lost.id);
    device.close(); // the ack never reaches the server
    await device.closed;
    device = await connect('first-ack-lost');
    await expectSilence(device);
    const { body: next } = await post('first-ack-lost');
    const [delivered] = await receive(device, 1);
    expect(delivered!.id).toBe(next.id);
    device.send({ type: 'ack', id: next.id, statusCode: 200 });
    const [again] = await receive(device, 1);
    expect(again).toMatchObject({ id: lost.id, seq: first!.seq });
    device.send({ type: 'ack', id: lost.id, statusCode: 200 });
    expect(await eventually(() => statusOf(lost.id), (s) => s === 'acked')).toBe('acked');
    device.close();
  });

  it('drains reconnecting backlogs at BACKLOG_RATE, oldest device first, without holding up live devices', async () => {
    const paced = await startTestServer(t.db, { BACKLOG_RATE: '100' });
    try {
      const postTo = (deviceId: string) => paced.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command });
      const live = await connectAuthenticated(paced.wsUrl, 'pace-live', mint('pace-live'));
      for (const deviceId of ['pace-old', 'pace-new']) {
        for (let i = 0; i < 150; i++) expect((await postTo(deviceId)).status).toBe(202);
      }
      const started = Date.now();
      const [older, newer] = await Promise.all([
        connectAuthenticated(paced.wsUrl, 'pace-old', mint('pace-old')),
        connectAuthenticated(paced.wsUrl, 'pace-new', mint('pace-new')),
      ]);
      await eventually(() => older.pending().length + newer.pending().length, (n) => n > 0); // the backlogs are draining
      const livePosted = Date.now();
      await postTo('pace-live');
      await live.next(2_000);
      const liveLatency = Date.now() - livePosted;
      await receive(older, 150, 10_000);
      await receive(newer, 150, 10_000);
      const drained = Date.now() - started;
      // 300 actuations at 100/s with at most one second of burst: at least 2 s when paced
      // (unpaced, the same machine drains them in well under 1 s); and the live device was
      // served while the backlog was still draining.
      expect(drained).toBeGreaterThanOrEqual(1_500);
      expect(liveLatency).toBeLessThan(drained);
      const { rows } = await t.db.pool.query(
        `select device_id, min(sent_at) as first, max(sent_at) as last from actuations
          where device_id in ('pace-old', 'pace-new') group by device_id`,
      );
      const byDevice = Object.fromEntries(rows.map((r) => [r.device_id, r]));
      expect(byDevice['pace-old'].last.getTime()).toBeLessThanOrEqual(byDevice['pace-new'].first.getTime());
      for (const d of [live, older, newer]) d.close();
    } finally {
      await paced.close();
    }
  });

  it('moves a reconnected device with nothing pending to live delivery while other backlogs still drain', async () => {
    const paced = await startTestServer(t.db, { BACKLOG_RATE: '100' });
    try {
      const postTo = (deviceId: string) => paced.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command });
      for (let i = 0; i < 300; i++) expect((await postTo('drain-busy')).status).toBe(202);
      const [busy, idle] = await Promise.all([
        connectAuthenticated(paced.wsUrl, 'drain-busy', mint('drain-busy')),
        connectAuthenticated(paced.wsUrl, 'drain-idle', mint('drain-idle')),
      ]);
      await eventually(() => busy.pending().length, (n) => n > 0); // the backlog lane has run (the idle device had nothing)
      // Both reconnected together; the busy one's 300 take about 3 s at 100/s. The idle one
      // had nothing pending, so its new actuation must not wait behind that backlog.
      const posted = Date.now();
      const created = (await (await postTo('drain-idle')).json()) as { id: string };
      const frame = await idle.next(2_000);
      expect(frame).toMatchObject({ code: 1024, id: created.id });
      expect(Date.now() - posted).toBeLessThan(1_000);
      const { rows } = await t.db.pool.query(`select count(*)::int as n from actuations where device_id = 'drain-busy' and status = 'queued'`);
      expect(rows[0].n).toBeGreaterThan(0);
      await receive(busy, 300, 10_000);
      for (const d of [busy, idle]) d.close();
    } finally {
      await paced.close();
    }
  });
});
