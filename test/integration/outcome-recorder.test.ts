/**
 * The webhook sender's outcome recorder (src/webhooks/outcome-recorder.ts) on a real
 * database: 2xx outcomes recorded behind the sender in few statements, the bound on what
 * is unrecorded, and a lost lease or a failed statement stopping it.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DeliveredOutcome } from '../../src/webhooks/delivery-sql.js';
import { makeOutcomeRecorder } from '../../src/webhooks/outcome-recorder.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** An endpoint held by `owner`, as a claim leaves it. */
async function heldWebhook(owner: string): Promise<string> {
  const id = crypto.randomUUID();
  await db.pool.query(
    `insert into webhooks (id, url, event_types, secret, lease_owner, lease_until) values ($1, 'http://127.0.0.1:9/', '{actuation.acked}', 's', $2, now() + interval '1 minute')`,
    [id, owner],
  );
  return id;
}

const outcome = (id: number): DeliveredOutcome => ({ event: { id, type: 'actuation.acked' }, startedAt: new Date(), statusCode: 204 });

async function state(id: string): Promise<{ cursor: number; delivered: number[] }> {
  const { rows } = await db.pool.query<{ cursor: number }>('select cursor from webhooks where id = $1', [id]);
  const { rows: d } = await db.pool.query<{ eventId: number }>(`select event_id as "eventId" from webhook_deliveries where webhook_id = $1 and status = 'delivered' order by event_id`, [id]);
  return { cursor: rows[0]!.cursor, delivered: d.map((r) => r.eventId) };
}

it('records every outcome handed over, in fewer statements than outcomes, and moves the cursor to the highest', async () => {
  const id = await heldWebhook('me');
  const counts: number[] = [];
  const recorder = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id, onRecorded: (n) => counts.push(n) });
  for (let e = 1; e <= 10; e++) recorder.delivered(outcome(e));
  expect(await recorder.settle()).toBe(true);
  expect(await state(id)).toEqual({ cursor: 10, delivered: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
  // The first statement left at once with one; the nine handed over meanwhile went in the next.
  expect(counts).toEqual([1, 9]);
});

it('with gatherMs, outcomes go in one statement once gatherMs passed or half of max are pending; settle() and room() do not wait for it', async () => {
  const id = await heldWebhook('me');
  const counts: number[] = [];
  const recorder = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id, gatherMs: 60_000, max: 8, onRecorded: (n) => counts.push(n) });
  for (let e = 1; e <= 3; e++) recorder.delivered(outcome(e));
  // Gathering (for a minute): settle() sends all three in one statement at once (with gatherMs 0: [1, 2]).
  expect(await recorder.settle()).toBe(true);
  expect(counts).toEqual([3]);
  // The fourth of 8 pending makes the statement leave at once.
  for (let e = 4; e <= 7; e++) recorder.delivered(outcome(e));
  await eventually(() => state(id), (s) => s.cursor === 7, 10_000);
  expect(counts).toEqual([3, 4]);
  for (let e = 8; e <= 10; e++) recorder.delivered(outcome(e));
  expect(await recorder.room()).toBe(true);
  expect(counts).toEqual([3, 4]);
  expect(await recorder.settle()).toBe(true);
  expect(await state(id)).toEqual({ cursor: 10, delivered: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });

  // A short gathering records on its own.
  const short = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id, gatherMs: 30, onRecorded: (n) => counts.push(n) });
  for (let e = 11; e <= 13; e++) short.delivered(outcome(e));
  await eventually(() => state(id), (s) => s.cursor === 13, 10_000);
  expect(counts).toEqual([3, 4, 3, 3]);
});

it('at `max` unrecorded, room() waits for the statement in flight', async () => {
  const id = await heldWebhook('me');
  const recorder = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id, max: 2 });
  // The endpoint's row locked elsewhere: the record statement waits on it.
  const blocker = await db.pool.connect();
  try {
    await blocker.query('begin');
    await blocker.query('select 1 from webhooks where id = $1 for update', [id]);
    recorder.delivered(outcome(1));
    expect(await recorder.room()).toBe(true);
    recorder.delivered(outcome(2));
    let roomGiven = false;
    const room = recorder.room().then((held) => (roomGiven = held));
    await eventually(
      async () => (await db.pool.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0].n as number,
      (n) => n === 1,
    );
    // Checked: without the wait in room() this is true (and the test fails).
    expect(roomGiven).toBe(false);
    await blocker.query('rollback');
    expect(await room).toBe(true);
  } finally {
    blocker.release();
  }
  expect(await recorder.settle()).toBe(true);
  expect(await state(id)).toEqual({ cursor: 2, delivered: [1, 2] });
});

it('records nothing once the lease is lost, and says so', async () => {
  const id = await heldWebhook('me');
  const recorder = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id });
  recorder.delivered(outcome(1));
  expect(await recorder.settle()).toBe(true);
  await db.pool.query(`update webhooks set lease_owner = 'other' where id = $1`, [id]);
  recorder.delivered(outcome(2));
  expect(await recorder.settle()).toBe(false);
  expect(await recorder.room()).toBe(false);
  recorder.delivered(outcome(3));
  expect(await recorder.settle()).toBe(false);
  expect(await state(id)).toEqual({ cursor: 1, delivered: [1] });
});

it('a failed statement makes room() and settle() throw its error', async () => {
  const id = await heldWebhook('me');
  const recorder = makeOutcomeRecorder({ pool: db.pool, instanceId: 'me', webhookId: id });
  // event_type is not null: the statement fails.
  recorder.delivered({ ...outcome(1), event: { id: 1, type: null as unknown as string } });
  await expect(recorder.settle()).rejects.toThrow(/null value/);
  await expect(recorder.room()).rejects.toThrow(/null value/);
  expect(await state(id)).toEqual({ cursor: 0, delivered: [] });
});
