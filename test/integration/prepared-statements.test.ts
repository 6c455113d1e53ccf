/**
 * The change feed's and the webhook sender's hot statements are named prepared statements
 * (src/db/named-statement.ts): prepared once per connection, then only executed, so their
 * plans are kept instead of made at every call. Checked on a one-connection pool through
 * `pg_prepared_statements`; without the names (plain text queries) none of them is listed
 * there (checked by running this test against the commit before them: it failed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePool, type Pool } from '../../src/db/pool.js';
import { readEvents, sequenceAndReadEvents, sequenceEvents } from '../../src/events/events-sql.js';
import { makeLogger } from '../../src/logger.js';
import { findNextEvents, recordAttempt, recordDeliveries } from '../../src/webhooks/delivery-sql.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let db: TestDatabase;
let one: Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  one = makePool({ connectionString: db.url, max: 1 }, makeLogger({ level: 'silent' }));
});
afterAll(async () => {
  await one?.end();
  await db?.drop();
});

async function preparedNames(): Promise<string[]> {
  const { rows } = await one.query<{ name: string }>('select name from pg_prepared_statements order by name');
  return rows.map((r) => r.name);
}

describe('prepared statements', () => {
  it('prepares the feed reads, the sequencer passes and the webhook head read and records once per connection', async () => {
    const webhook = { id: '00000000-0000-4000-8000-000000000001', url: 'http://127.0.0.1:9/', secret: 's', eventTypes: ['actuation.acked'], accounts: null, cursor: 0 };
    const outcome = { webhookId: webhook.id, event: { id: 1, type: 'actuation.acked' }, status: 'delivered' as const, startedAt: new Date(), statusCode: 204, error: null, nextAttemptAt: null };
    for (let i = 0; i < 3; i++) {
      await sequenceEvents(one, 100);
      await sequenceAndReadEvents(one, 100, true);
      await readEvents(one, 0, null, {}, 1_000);
      await readEvents(one, 0, 10, { deviceId: 'd', types: ['actuation.acked'] }, 500);
      await findNextEvents(one, webhook, 100);
      // No such webhook: nothing recorded, but the statement ran.
      expect(await recordAttempt(one, 'instance', outcome)).toBe(false);
      expect(await recordDeliveries(one, 'instance', webhook.id, [outcome, { ...outcome, event: { id: 2, type: 'actuation.acked' } }])).toBe(false);
    }
    const names = await preparedNames();
    const expected = ['events_sequence_', 'events_sequence_read_', 'events_read_', 'webhooks_find_next_events_', 'webhooks_record_attempt_', 'webhooks_record_deliveries_'];
    for (const prefix of expected) expect(names.filter((n) => n.startsWith(prefix)).length, `${prefix} in ${names.join(', ')}`).toBeGreaterThan(0);
    // One per statement text: the unfiltered and the filtered read are two, repeated calls add none.
    expect(names.filter((n) => n.startsWith('events_read_'))).toHaveLength(2);
    expect(names).toHaveLength(7);
  });
});
