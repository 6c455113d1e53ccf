/**
 * SIGKILL of the instance sending to an endpoint, mid-request: nothing is lost and only
 * the event in flight is sent twice. The sender is a real process (`src/main.ts`); the
 * instance that takes over is in-process, on the same database. Checked: moving the
 * cursor before the request instead of in the statement that records its outcome (at
 * most once) fails this test.
 */
import { afterAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { appendEvents } from '../helpers/feed-events.js';
import { startInstanceProcess, type InstanceProcess } from '../helpers/main-process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

// The lease is WEBHOOK_TIMEOUT_MS + 3 × DATABASE_TIMEOUT_MS: 6 s here before the survivor takes over.
const ENV = { DSS_ENABLED: 'false', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT_MS: '3000', DATABASE_TIMEOUT_MS: '1000', WEBHOOK_RETRY_MIN_MS: '50', WEBHOOK_RETRY_MAX_MS: '200' };

let db: TestDatabase | undefined;
let a: InstanceProcess | undefined;
let b: TestServer | undefined;
let r: WebhookReceiver | undefined;

afterAll(async () => {
  await a?.process.kill();
  await b?.close();
  await r?.close();
  await db?.drop();
});

it('a SIGKILL of the sender mid-delivery loses nothing and duplicates only the event in flight', { timeout: 90_000 }, async () => {
  db = await createTestDatabase();
  let hung = false;
  // The third event's first request is never answered: the sender is killed while it waits.
  r = await startWebhookReceiver((d) => {
    if (d.body.data.deviceId === 'k-3' && !hung) {
      hung = true;
      return 'hang';
    }
    return 200;
  });
  a = await startInstanceProcess(db.url, 'webhooks-a', ENV);
  const res = await a.api('/v1/webhooks', { method: 'POST', json: { url: r.url, events: ['actuation.acked'], secret: 'whsec-sigkill-0123456789' } });
  expect(res.status).toBe(201);
  const { id } = (await res.json()) as { id: string };

  const before = await appendEvents(db.pool, [1, 2, 3, 4, 5].map((n) => ({ type: 'actuation.acked', deviceId: `k-${n}` })));
  await eventually(() => hung, (h) => h, 30_000);
  a.process.child.kill('SIGKILL');
  expect(await a.process.exited).toMatchObject({ signal: 'SIGKILL' });
  const { rows: lease } = await db.pool.query<{ leaseOwner: string; cursor: number }>('select lease_owner as "leaseOwner", cursor from webhooks where id = $1', [id]);
  expect(lease[0]).toEqual({ leaseOwner: 'webhooks-a', cursor: before[1] });

  const after = await appendEvents(db.pool, [6, 7].map((n) => ({ type: 'actuation.acked', deviceId: `k-${n}` })));
  b = await startTestServer(db, ENV);
  const all = [...before, ...after];
  await eventually(() => r!.ids(), (got) => got.length >= all.length + 1, 60_000);
  // In order; the third (in flight at the kill) twice, nothing else twice, nothing missing.
  expect(r.ids()).toEqual([all[0], all[1], all[2], all[2], ...all.slice(3)]);
  const rows = await eventually(
    async () => (await db!.pool.query<{ eventId: number; status: string }>('select event_id as "eventId", status from webhook_deliveries where webhook_id = $1 order by event_id', [id])).rows,
    (got) => got.length === all.length && got.every((d) => d.status === 'delivered'),
  );
  expect(rows.map((d) => d.eventId)).toEqual(all);
});
