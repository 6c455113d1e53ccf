/**
 * SIGKILL of the instance sending to an endpoint: nothing is lost, and what is sent twice
 * is bounded: the event in flight, plus the 2xx outcomes not yet recorded (at most
 * UNRECORDED_MAX in all). The sender is a real process (`src/main.ts`); the instance that
 * takes over is in-process, on the same database.
 */
import { afterEach, expect, it } from 'vitest';
import { UNRECORDED_MAX } from '../../src/webhooks/outcome-recorder.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { appendEvents, appendManyEvents } from '../helpers/feed-events.js';
import { startInstanceProcess, type InstanceProcess } from '../helpers/main-process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startWebhookReceiver, type ReceivedDelivery, type Answer, type WebhookReceiver } from '../helpers/webhook-receiver.js';

// The lease is WEBHOOK_TIMEOUT_MS + 3 × DATABASE_TIMEOUT_MS: 6 s here before the survivor takes over.
const ENV = { DSS_ENABLED: 'false', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT_MS: '3000', DATABASE_TIMEOUT_MS: '1000', WEBHOOK_RETRY_MIN_MS: '50', WEBHOOK_RETRY_MAX_MS: '200' };

let db: TestDatabase | undefined;
let a: InstanceProcess | undefined;
let b: TestServer | undefined;
let r: WebhookReceiver | undefined;

afterEach(async () => {
  await a?.process.kill();
  await b?.close();
  await r?.close();
  await db?.drop();
  a = b = r = db = undefined;
});

/** A database, a receiver answering as `respond` says, and the sender process `a` with a webhook to it; returns its id. */
async function senderTo(respond: (d: ReceivedDelivery) => Answer): Promise<string> {
  db = await createTestDatabase();
  r = await startWebhookReceiver(respond);
  a = await startInstanceProcess(db.url, 'webhooks-a', ENV);
  const res = await a.api('/v1/webhooks', { method: 'POST', json: { url: r.url, events: ['actuation.acked'], secret: 'whsec-sigkill-0123456789' } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function killSender(): Promise<void> {
  a!.process.child.kill('SIGKILL');
  expect(await a!.process.exited).toMatchObject({ signal: 'SIGKILL' });
}

async function webhookRow(id: string): Promise<{ leaseOwner: string | null; cursor: number }> {
  const { rows } = await db!.pool.query<{ leaseOwner: string | null; cursor: number }>('select lease_owner as "leaseOwner", cursor from webhooks where id = $1', [id]);
  return rows[0]!;
}

async function expectAllDelivered(id: string, all: number[]): Promise<void> {
  const rows = await eventually(
    async () => (await db!.pool.query<{ eventId: number; status: string }>('select event_id as "eventId", status from webhook_deliveries where webhook_id = $1 order by event_id', [id])).rows,
    (got) => got.length === all.length && got.every((d) => d.status === 'delivered'),
    30_000,
  );
  expect(rows.map((d) => d.eventId)).toEqual(all);
}

it('a SIGKILL of the sender while a receiver hangs loses nothing and duplicates only the event in flight', { timeout: 90_000 }, async () => {
  let hung = false;
  // The third event's first request is never answered: the sender is killed while it waits.
  const id = await senderTo((d) => {
    if (d.body.data.deviceId === 'k-3' && !hung) {
      hung = true;
      return 'hang';
    }
    return 200;
  });
  const before = await appendEvents(db!.pool, [1, 2, 3, 4, 5].map((n) => ({ type: 'actuation.acked', deviceId: `k-${n}` })));
  await eventually(() => hung, (h) => h, 30_000);
  // While the request hangs, the recorder records the two delivered before it (off the send path: not at once).
  await eventually(() => webhookRow(id), (w) => w.cursor === before[1], 10_000);
  await killSender();
  expect(await webhookRow(id)).toEqual({ leaseOwner: 'webhooks-a', cursor: before[1] });

  const after = await appendEvents(db!.pool, [6, 7].map((n) => ({ type: 'actuation.acked', deviceId: `k-${n}` })));
  b = await startTestServer(db!, ENV);
  const all = [...before, ...after];
  await eventually(() => r!.ids(), (got) => got.length >= all.length + 1, 60_000);
  // In order; the third (in flight at the kill) twice, nothing else twice, nothing missing.
  expect(r!.ids()).toEqual([all[0], all[1], all[2], all[2], ...all.slice(3)]);
  await expectAllDelivered(id, all);
});

// Checked: re-reading the cursor at a lease renewal without first waiting for the recorder
// (the `settle` before `renewLease` in sender.ts) fails this test (events sent again before the kill).
it('a SIGKILL of the sender mid-stream to a fast receiver loses nothing and sends at most UNRECORDED_MAX events twice, in order', { timeout: 120_000 }, async () => {
  const id = await senderTo(() => 200);
  const all = await appendManyEvents(db!.pool, 'actuation.acked', 3_000, 's-');
  // Mid-stream: deliveries going on, outcomes being recorded behind them.
  await eventually(() => r!.ids().length, (n) => n >= 1_000, 60_000);
  await killSender();
  const { leaseOwner, cursor } = await webhookRow(id);
  expect(leaseOwner).toBe('webhooks-a');
  const firstUnrecorded = all.findIndex((e) => e > cursor);
  expect(firstUnrecorded).toBeGreaterThan(0);

  b = await startTestServer(db!, ENV);
  await eventually(() => r!.ids(), (got) => got.at(-1) === all.at(-1), 60_000);
  const got = r!.ids();
  // The survivor starts after the recorded cursor: what the killed sender delivered past it arrives twice.
  const restart = got.findIndex((e, i) => i > 0 && e <= got[i - 1]!);
  const sentBeforeKill = restart === -1 ? got.length - (all.length - firstUnrecorded) : restart;
  const duplicates = sentBeforeKill - firstUnrecorded;
  expect(duplicates).toBeGreaterThanOrEqual(0);
  expect(duplicates).toBeLessThanOrEqual(UNRECORDED_MAX);
  expect(got).toEqual([...all.slice(0, sentBeforeKill), ...all.slice(firstUnrecorded)]);
  await expectAllDelivered(id, all);
});
