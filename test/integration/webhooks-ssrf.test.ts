/**
 * The SSRF guard with WEBHOOK_ALLOW_PRIVATE off (the default): a receiver on 127.0.0.1
 * that must never be reached, by an IP literal or by a name that resolves to loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRefusedAddress } from '../../src/webhooks/destination-guard.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { appendEvents } from '../helpers/feed-events.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

let db: TestDatabase;
let server: TestServer;
let r: WebhookReceiver;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { DSS_ENABLED: 'false', WEBHOOK_RETRY_MIN_MS: '50', WEBHOOK_RETRY_MAX_MS: '200' });
  r = await startWebhookReceiver();
});
afterAll(async () => {
  await server?.close();
  await r?.close();
  await db?.drop();
});

const SECRET = 'whsec-ssrf-0123456789abcdef';

describe('SSRF guard (WEBHOOK_ALLOW_PRIVATE off)', () => {
  it('refuses a loopback, private, link-local or metadata IP literal at creation and change (400)', async () => {
    for (const host of ['127.0.0.1', '[::1]', '10.1.2.3', '192.168.0.10', '172.20.0.1', '169.254.169.254', '[::ffff:127.0.0.1]', '0.0.0.0', '[fd00:ec2::254]', '100.100.100.200']) {
      const res = await server.api('/v1/webhooks', { method: 'POST', json: { url: `http://${host}:${r.port}/hook`, events: ['actuation.acked'], secret: SECRET } });
      expect(res.status, host).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/^url: .* is in a loopback, private, link-local or reserved range/) });
    }
    const created = await server.api('/v1/webhooks', { method: 'POST', json: { url: 'https://hooks.example.com/', events: ['actuation.acked'], secret: SECRET, enabled: false } });
    const { id } = (await created.json()) as { id: string };
    const res = await server.api(`/v1/webhooks/${id}`, { method: 'PATCH', json: { url: `http://127.0.0.1:${r.port}/hook` } });
    expect(res.status).toBe(400);
  });

  it('refuses a name that resolves to loopback where it connects: the receiver is never reached', async () => {
    // `localhost` passes validation (a name), and resolves to 127.0.0.1 / ::1 only when the
    // request connects: the guard's lookup refuses it there. Checked: without the `lookup`
    // option in bounded-post.ts the receiver gets the event and this fails.
    const res = await server.api('/v1/webhooks', { method: 'POST', json: { url: `http://localhost:${r.port}/hook`, events: ['actuation.acked'], secret: SECRET } });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const [eventId] = await appendEvents(db.pool, [{ type: 'actuation.acked', deviceId: 'ssrf-1' }]);
    const page = await eventually(
      async () => (await (await server.api(`/v1/webhooks/${id}/deliveries`)).json()) as { items: Record<string, any>[] },
      (p) => p.items[0]?.attempts >= 2,
    );
    expect(page.items[0]).toMatchObject({ eventId, status: 'pending', lastStatusCode: null, lastError: expect.stringMatching(/destination localhost \((127\.0\.0\.1|::1)\) is in a loopback/) });
    const test = await server.api(`/v1/webhooks/${id}/test`, { method: 'POST' });
    expect(await test.json()).toMatchObject({ delivered: false, statusCode: null, error: expect.stringMatching(/refused/) });
    expect(r.received).toEqual([]);
  });

  it('judges addresses by range, IPv4-mapped IPv6 by its IPv4 address', () => {
    for (const refused of ['127.0.0.1', '127.255.0.1', '10.0.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd12::1', 'fc00::1', '::ffff:10.0.0.1', '::ffff:7f00:1', 'ff02::1', '64:ff9b::a00:1', 'not-an-ip']) {
      expect(isRefusedAddress(refused), refused).toBe(true);
    }
    for (const allowed of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) {
      expect(isRefusedAddress(allowed), allowed).toBe(false);
    }
  });
});
