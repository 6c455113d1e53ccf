/**
 * A live claim over many devices with deep queues (a bulk submitted on another instance for
 * the devices held here) is split into claims of at most LIVE_MAX_ROWS_PER_CLAIM rows, one
 * right after the other, until every device has all of its actuations. Checked to fail
 * without the bound (one claim marked all 3,000 rows sent: one `sent_at`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIVE_MAX_ROWS_PER_CLAIM, makeDispatcher, type DeviceChannel, type Dispatcher } from '../../src/actuations/dispatcher.js';
import { openSessions } from '../../src/gateway/sessions-sql.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';

const DEVICES = 20;
const PER_DEVICE = 150;
const instanceId = `live-claim-${process.pid}`;
let db: TestDatabase;
let dispatcher: Dispatcher;

beforeAll(async () => {
  db = await createTestDatabase();
  dispatcher = makeDispatcher({
    pool: db.pool,
    logger: makeLogger({ level: 'silent' }),
    instanceId,
    backlogRate: 10_000,
    redeliverUnacked: true,
    pollIntervalMs: 60_000,
    maxBufferedBytes: 1024 * 1024,
    databaseTimeoutMs: 5_000,
  });
});
afterAll(async () => {
  await dispatcher?.close();
  await db?.drop();
});

describe('a live claim over deep queues', () => {
  it(`claims at most ${LIVE_MAX_ROWS_PER_CLAIM} rows at a time and delivers them all, in seq order per device`, async () => {
    expect(DEVICES * PER_DEVICE).toBeGreaterThan(LIVE_MAX_ROWS_PER_CLAIM);
    const ids = Array.from({ length: DEVICES }, (_, i) => `deep-${i}`);
    const opened = await openSessions(db.pool, instanceId, ids.map((deviceId) => ({ deviceId, accountId: null, remoteAddress: null })));
    const received = new Map<string, number[]>(ids.map((id) => [id, []]));
    const channels: DeviceChannel[] = ids.map((deviceId, i) => ({
      deviceId,
      sessionId: opened[i]!.sessionId,
      accountId: null,
      send(text: string) {
        received.get(deviceId)!.push((JSON.parse(text) as { seq: number }).seq);
        return true;
      },
      bufferedBytes: () => 0,
    }));
    for (const c of channels) dispatcher.deviceConnected(c);
    // Nothing pending: each device leaves the backlog lane at its first tick (every ~100 ms).
    await new Promise((r) => setTimeout(r, 500));

    // Queued behind the dispatcher's back, as another instance's bulk would leave them.
    await db.pool.query(
      `insert into actuations (id, device_id, seq, status, gateway_id, component_id, command, params, source)
       select gen_random_uuid(), d, s, 'queued', d, 'c', 'set', '[]', '{"kind":"rest"}'
         from unnest($1::text[]) as d, generate_series(1, $2::int) as s`,
      [ids, PER_DEVICE],
    );
    dispatcher.nudge(ids);

    const total = DEVICES * PER_DEVICE;
    await eventually(() => [...received.values()].reduce((n, seqs) => n + seqs.length, 0), (n) => n >= total, 30_000);
    for (const [deviceId, seqs] of received) expect(seqs, deviceId).toEqual(Array.from({ length: PER_DEVICE }, (_, i) => i + 1));
    // Rows of one claim share its transaction's sent_at: no claim took more than the bound.
    const { rows } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from actuations where device_id like 'deep-%' group by sent_at order by 1 desc`,
    );
    expect(rows.reduce((n, r) => n + r.n, 0)).toBe(total);
    expect(rows[0]!.n).toBeLessThanOrEqual(LIVE_MAX_ROWS_PER_CLAIM);
    expect(rows.length).toBeGreaterThanOrEqual(Math.ceil(total / LIVE_MAX_ROWS_PER_CLAIM));
  });
});
