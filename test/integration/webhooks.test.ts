/**
 * Webhooks through the real app: REST, and deliveries to real HTTP receivers on
 * ephemeral ports, from events appended to `events` as the change feed's sequencer does.
 * (WEBHOOK_ALLOW_PRIVATE: the receivers are on 127.0.0.1; the SSRF guard has its own file.)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { appendEvents } from '../helpers/feed-events.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startWebhookReceiver, verifySignature, type Answer, type ReceivedDelivery, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const ENV = {
  DSS_ENABLED: 'false',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_RETRY_MIN_MS: '50',
  WEBHOOK_RETRY_MAX_MS: '200',
  WEBHOOK_TIMEOUT_MS: '1000',
  LOG_LEVEL: 'trace',
  WEBHOOK_SECRET_KEY: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
};
const SECRET = 'whsec-test-0123456789abcdef-SECRET';

let db: TestDatabase;
let server: TestServer;
const log = captureLog();
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, ENV, { logDestination: log.sink });
});
afterAll(async () => {
  await server?.close();
  await Promise.all(receivers.map((r) => r.close()));
  await db?.drop();
});

async function json(res: Response) {
  return (await res.json()) as Record<string, any>;
}

async function receiver(respond?: (d: ReceivedDelivery, i: number) => Answer): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver(respond);
  receivers.push(r);
  return r;
}

async function createWebhook(url: string, events: string[], secret = SECRET): Promise<string> {
  const res = await server.api('/v1/webhooks', { method: 'POST', json: { url, events, secret } });
  expect(res.status).toBe(201);
  return (await json(res)).id as string;
}

async function deliveries(id: string): Promise<Record<string, any>[]> {
  const res = await server.api(`/v1/webhooks/${id}/deliveries`);
  expect(res.status).toBe(200);
  return (await json(res)).items as Record<string, any>[];
}

const acked = (deviceId: string) => ({ type: 'actuation.acked', deviceId, data: { id: crypto.randomUUID(), deviceId, status: 'acked' } });

describe('/v1/webhooks', () => {
  it('creates, reads, lists, changes and deletes; the secret is never returned nor logged', async () => {
    let res = await server.api('/v1/webhooks', { method: 'POST', json: { url: 'https://hooks.example.com/a', events: ['actuation.acked', 'actuation.acked', 'device.connected'], secret: SECRET } });
    expect(res.status).toBe(201);
    const created = await json(res);
    expect(created).toMatchObject({ url: 'https://hooks.example.com/a', events: ['actuation.acked', 'device.connected'], enabled: true, accounts: null, disabledReason: null });
    expect(JSON.stringify(created)).not.toContain(SECRET);
    // Sealed at rest with WEBHOOK_SECRET_KEY.
    const { rows } = await db.pool.query<{ secret: string }>('select secret from webhooks where id = $1', [created.id]);
    expect(rows[0]!.secret).toMatch(/^sealed:v1:/);
    expect(rows[0]!.secret).not.toContain(SECRET);
    res = await server.api(`/v1/webhooks/${created.id}`);
    expect(await json(res)).toEqual(created);
    res = await server.api('/v1/webhooks');
    expect((await json(res)).items.map((w: { id: string }) => w.id)).toContain(created.id);
    res = await server.api(`/v1/webhooks/${created.id}`, { method: 'PATCH', json: { enabled: false, secret: `${SECRET}-2` } });
    expect(res.status).toBe(200);
    const changed = await json(res);
    expect(changed.enabled).toBe(false);
    expect(JSON.stringify(changed)).not.toContain(SECRET);
    res = await server.api(`/v1/webhooks/${created.id}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect((await server.api(`/v1/webhooks/${created.id}`)).status).toBe(404);
    expect((await server.api(`/v1/webhooks/${created.id}`, { method: 'DELETE' })).status).toBe(404);
    // The server logs at trace level (request bodies' shapes, every query it logs): no secret anywhere.
    expect(log.text()).not.toContain(SECRET);
  });

  it('refuses bad input with 400 naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ url: 'ftp://x.example.com/', events: ['actuation.acked'], secret: SECRET }, /^url:/],
      [{ url: 'https://user:pw@x.example.com/', events: ['actuation.acked'], secret: SECRET }, /^url: must not contain a user name or password/],
      [{ url: 'https://x.example.com/', events: ['actuation.nope'], secret: SECRET }, /^events\.0:/],
      [{ url: 'https://x.example.com/', events: [], secret: SECRET }, /^events:/],
      [{ url: 'https://x.example.com/', events: ['actuation.acked'], secret: 'short' }, /^secret:/],
      [{ url: 'https://x.example.com/', events: ['actuation.acked'] }, /^secret:/],
    ];
    for (const [body, message] of cases) {
      const res = await server.api('/v1/webhooks', { method: 'POST', json: body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      const { error } = await json(res);
      expect(error.code).toBe('VALIDATION_FAILED');
      expect(error.message).toMatch(message);
    }
    expect((await server.api('/v1/webhooks/not-a-uuid')).status).toBe(400);
  });
});

describe('deliveries', () => {
  it('POSTs each subscribed event as {id,type,at,data}, signed, with X-Iotws-Event-Id; other types are not sent', async () => {
    const r = await receiver();
    const id = await createWebhook(r.url, ['actuation.acked', 'device.connected']);
    const ids = await appendEvents(db.pool, [acked('d-1'), { type: 'actuation.sent', deviceId: 'd-1' }, { type: 'device.connected', deviceId: 'd-1' }, acked('d-2')]);
    await eventually(() => r.ids(), (got) => got.length >= 3);
    expect(r.ids()).toEqual([ids[0], ids[2], ids[3]]);
    for (const d of r.received) {
      // The signature verifies with the secret over the exact bytes received, and only with it.
      expect(verifySignature(SECRET, d.headers['x-iotws-signature'] as string, d.rawBody, Math.floor(Date.now() / 1000))).toBe(true);
      expect(verifySignature(`${SECRET}x`, d.headers['x-iotws-signature'] as string, d.rawBody, Math.floor(Date.now() / 1000))).toBe(false);
      expect(verifySignature(SECRET, d.headers['x-iotws-signature'] as string, d.rawBody.replace('d-', 'e-'), Math.floor(Date.now() / 1000))).toBe(false);
      expect(d.headers['x-iotws-event-id']).toBe(String(d.body.id));
      expect(d.headers['content-type']).toBe('application/json');
      expect(Object.keys(d.body)).toEqual(['id', 'type', 'at', 'data']);
      expect(new Date(d.body.at).toISOString()).toBe(d.body.at);
    }
    expect(r.received[0]!.body).toMatchObject({ type: 'actuation.acked', data: { deviceId: 'd-1', status: 'acked' } });
    const rows = await eventually(() => deliveries(id), (items) => items.length === 3);
    expect(rows.map((d) => [d.eventId, d.status, d.attempts, d.lastStatusCode])).toEqual([
      [ids[3], 'delivered', 1, 200],
      [ids[2], 'delivered', 1, 200],
      [ids[0], 'delivered', 1, 200],
    ]);
    const webhook = await json(await server.api(`/v1/webhooks/${id}`));
    expect(webhook.lastEventId).toBe(ids[3]);
    expect((await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' })).status).toBe(204);
    // Its deliveries go with it: deleteWebhook deletes them since migration 0021 dropped the foreign key (without that
    // second statement this fails: checked).
    const { rows: left } = await db.pool.query('select 1 from webhook_deliveries where webhook_id = $1', [id]);
    expect(left).toHaveLength(0);
  });

  it('retries on 500 with backoff, head of line: in event order, each delivered once it gets a 2xx', async () => {
    let failuresLeft = 3;
    const r = await receiver((d) => (d.body.data.deviceId === 'r-1' && failuresLeft-- > 0 ? 500 : 200));
    const id = await createWebhook(r.url, ['actuation.acked']);
    const ids = await appendEvents(db.pool, [acked('r-1'), acked('r-2'), acked('r-3')]);
    await eventually(() => r.ids(), (got) => got.length >= 6, 20_000);
    // Nothing after the head was sent while it was being retried.
    expect(r.ids()).toEqual([ids[0], ids[0], ids[0], ids[0], ids[1], ids[2]]);
    const rows = await eventually(() => deliveries(id), (items) => items.length === 3 && items.every((d) => d.status === 'delivered'));
    const head = rows.find((d) => d.eventId === ids[0])!;
    expect(head).toMatchObject({ attempts: 4, lastStatusCode: 200, lastError: null, nextAttemptAt: null });
    expect(new Date(head.lastAttemptAt).getTime()).toBeGreaterThan(new Date(head.firstAttemptAt).getTime());
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('shows a pending retry with its last status code and next attempt', async () => {
    const r = await receiver(() => 503);
    const id = await createWebhook(r.url, ['actuation.acked']);
    const [eventId] = await appendEvents(db.pool, [acked('p-1')]);
    const [row] = await eventually(() => deliveries(id), (items) => items.length === 1 && items[0]!.attempts >= 2);
    expect(row).toMatchObject({ eventId, eventType: 'actuation.acked', status: 'pending', lastStatusCode: 503, lastError: 'HTTP 503' });
    expect(row!.nextAttemptAt).not.toBeNull();
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('a 410 Gone disables the endpoint; re-enabling sends the event again, then the rest', async () => {
    let gone = true;
    const r = await receiver(() => (gone ? 410 : 200));
    const id = await createWebhook(r.url, ['actuation.acked']);
    const ids = await appendEvents(db.pool, [acked('g-1'), acked('g-2')]);
    const disabled = await eventually(async () => json(await server.api(`/v1/webhooks/${id}`)), (w) => w.enabled === false);
    expect(disabled.disabledReason).toMatch(/410 Gone/);
    expect(r.ids()).toEqual([ids[0]]);
    // The backlog gauge counts what waits for it.
    const metrics = await (await server.api('/metrics')).text();
    expect(metrics).toContain(`iotws_webhook_backlog{webhook="${id}",enabled="false"} 2`);
    expect(metrics).toMatch(/iotws_webhook_deliveries_total\{result="gone"\} [1-9]/);
    // Disabled: new events wait. (A poll later, still only the one request.)
    await appendEvents(db.pool, [acked('g-3')]);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(r.ids()).toEqual([ids[0]]);
    gone = false;
    const res = await server.api(`/v1/webhooks/${id}`, { method: 'PATCH', json: { enabled: true } });
    expect(await json(res)).toMatchObject({ enabled: true, disabledReason: null });
    await eventually(() => r.ids(), (got) => got.length >= 4);
    expect(r.ids()).toEqual([ids[0], ids[0], ids[1], ids[1]! + 1]);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('a receiver that does not answer within WEBHOOK_TIMEOUT_MS is retried', async () => {
    const r = await receiver((_d, i) => (i === 0 ? 'hang' : 200));
    const id = await createWebhook(r.url, ['actuation.acked']);
    const [eventId] = await appendEvents(db.pool, [acked('t-1')]);
    const [row] = await eventually(() => deliveries(id), (items) => items[0]?.status === 'delivered', 20_000);
    expect(row).toMatchObject({ eventId, attempts: 2, lastStatusCode: 200 });
    expect(r.ids()).toEqual([eventId, eventId]);
    expect(log.json().some((l) => l.webhookId === id && typeof l.error === 'string' && /^timeout/.test(l.error))).toBe(true);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('an event older than WEBHOOK_MAX_AGE_HOURS that fails is marked failed, and the endpoint moves on', async () => {
    const r = await receiver((d) => (d.body.data.deviceId === 'old-1' ? 500 : 200));
    const id = await createWebhook(r.url, ['actuation.acked']);
    const ids = await appendEvents(db.pool, [{ ...acked('old-1'), at: new Date(Date.now() - 25 * 3_600_000) }, acked('new-1')]);
    const rows = await eventually(() => deliveries(id), (items) => items.length === 2 && items.every((d) => d.status !== 'pending'));
    expect(rows.map((d) => [d.eventId, d.status, d.attempts, d.lastStatusCode])).toEqual([
      [ids[1], 'delivered', 1, 200],
      [ids[0], 'failed', 1, 500],
    ]);
    const failed = await json(await server.api(`/v1/webhooks/${id}/deliveries?status=failed`));
    expect(failed.items.map((d: { eventId: number }) => d.eventId)).toEqual([ids[0]]);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('follows no redirect: a 302 is an answer, retried', async () => {
    const target = await receiver();
    const r = await receiver(() => 302);
    // The receiver's 302 carries no Location by default; give it one to the other receiver.
    const redirecting = http.createServer((_req, res) => res.writeHead(302, { location: target.url }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/hook`;
    const id = await createWebhook(url, ['actuation.acked']);
    await appendEvents(db.pool, [acked('x-1')]);
    const [row] = await eventually(() => deliveries(id), (items) => items[0]?.attempts >= 2);
    expect(row).toMatchObject({ status: 'pending', lastStatusCode: 302 });
    expect(target.received).toEqual([]);
    expect(r.received).toEqual([]);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
    redirecting.closeAllConnections();
    redirecting.close();
  });

  it('reads at most 64 KB of a response: a 200 with an endless body is delivered', async () => {
    // Checked: without the cap (reading to the end) this times out and stays pending.
    const endless = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = Buffer.alloc(16 * 1024, 'x');
        const pump = () => {
          while (res.write(chunk));
        };
        res.on('drain', pump);
        pump();
      });
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    const id = await createWebhook(`http://127.0.0.1:${(endless.address() as AddressInfo).port}/`, ['actuation.acked']);
    await appendEvents(db.pool, [acked('big-1')]);
    const [row] = await eventually(() => deliveries(id), (items) => items.length === 1 && items[0]!.status === 'delivered');
    expect(row).toMatchObject({ attempts: 1, lastStatusCode: 200 });
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
    endless.closeAllConnections();
    endless.close();
  });

  it('sends only the events of its accounts when it has any (filtered in SQL on events.account_id)', async () => {
    const r = await receiver();
    const id = await createWebhook(r.url, ['actuation.acked']);
    // What a key limited to accounts stores at creation (principal.accounts, branch `accounts`).
    await db.pool.query(`update webhooks set accounts = '{acme,globex}' where id = $1`, [id]);
    const ids = await appendEvents(db.pool, [
      { ...acked('a-1'), accountId: 'acme' },
      { ...acked('a-2'), accountId: 'initech' },
      acked('a-3'),
      { ...acked('a-4'), accountId: 'globex' },
    ]);
    await eventually(() => r.ids(), (got) => got.length >= 2);
    const webhook = await eventually(async () => json(await server.api(`/v1/webhooks/${id}`)), (w) => w.lastEventId === ids[3]);
    expect(webhook.accounts).toEqual(['acme', 'globex']);
    expect(r.ids()).toEqual([ids[0], ids[3]]);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });

  it('POST /test sends a signed webhook.test event now and answers with what the receiver did', async () => {
    const r = await receiver((_d, i) => (i === 0 ? 200 : 500));
    const id = await createWebhook(r.url, ['actuation.acked']);
    let res = await server.api(`/v1/webhooks/${id}/test`, { method: 'POST' });
    expect(await json(res)).toEqual({ delivered: true, statusCode: 200, error: null });
    const [d] = r.received;
    expect(d!.body).toMatchObject({ id: 0, type: 'webhook.test', data: { webhookId: id } });
    expect(verifySignature(SECRET, d!.headers['x-iotws-signature'] as string, d!.rawBody, Math.floor(Date.now() / 1000))).toBe(true);
    res = await server.api(`/v1/webhooks/${id}/test`, { method: 'POST' });
    expect(await json(res)).toEqual({ delivered: false, statusCode: 500, error: 'HTTP 500' });
    expect(await deliveries(id)).toEqual([]);
    await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
  });
});

describe('several instances', () => {
  it('one sender per endpoint at a time: in order, no duplicates, never two requests at once', async () => {
    const second = await startTestServer(db, ENV);
    try {
      const r = await receiver(() => 200);
      const id = await createWebhook(r.url, ['actuation.acked']);
      const ids: number[] = [];
      for (let batch = 0; batch < 5; batch++) ids.push(...(await appendEvents(db.pool, Array.from({ length: 6 }, (_v, i) => acked(`m-${batch}-${i}`)))));
      await eventually(() => r.ids(), (got) => got.length >= ids.length, 30_000);
      expect(r.ids()).toEqual(ids);
      expect(r.maxConcurrent()).toBe(1);
      await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' });
    } finally {
      await second.close();
    }
  });
});
