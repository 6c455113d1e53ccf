/**
 * What `submit_actuations` answers for a batch without idempotency or collapse keys
 * (migration 0026 builds that answer from the arrays it holds instead of reading the rows
 * back) must be what it committed: for every item, the row's id, device, seq, status,
 * created_at and expires_at; nothing for an item refused as queue_full. Also the counter
 * rows: a batch mixing devices seen before with devices never seen numbers each from 1
 * and keeps going without gaps (0026 inserts counter rows only for new devices).
 * Checked to fail without its mechanism: with the answer's status forced to 'queued',
 * the direct sends' rows disagree.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`insert into instances (id, heartbeat_interval_ms) values ('answer-test', 1000)`);
});

afterAll(async () => {
  await db?.drop();
});

interface AnswerRow {
  idx: number;
  outcome: string;
  id: string | null;
  device_id: string | null;
  seq: number | null;
  status: string | null;
  created_at: Date | null;
  expires_at: Date | null;
  superseded: unknown;
}

const item = (deviceId: string, extra: Record<string, unknown> = {}) => ({
  id: crypto.randomUUID(),
  deviceId,
  gatewayId: deviceId,
  componentId: 'c',
  command: 'set',
  params: [{ name: 'p', value: '1' }],
  source: { kind: 'rest', caller: 'test', requestId: 'r' },
  ...extra,
});

async function submit(items: object[], maxQueued: number): Promise<AnswerRow[]> {
  const { rows } = await db.pool.query<AnswerRow>(`select * from submit_actuations($1::jsonb, $2, '{}'::text[], 'answer-test')`, [JSON.stringify(items), maxQueued]);
  return rows;
}

describe('submit_actuations answers a plain batch with what it committed', () => {
  it('direct sends, queued rows, queue_full and new devices beside known ones', async () => {
    const { rows: sessions } = await db.pool.query<{ id: string }>(`insert into device_sessions (device_id, instance_id) values ('known-live', 'answer-test') returning id`);
    const session = Number(sessions[0]!.id);
    // Known devices: each has a counter row and one queued actuation already.
    await submit([item('known-queued'), item('known-live', { sessionId: session })], 10);
    const before = await db.pool.query<{ device_id: string; last_seq: number }>(`select device_id, last_seq from device_counters order by 1`);
    expect(before.rows).toEqual([
      { device_id: 'known-live', last_seq: 1 },
      { device_id: 'known-queued', last_seq: 1 },
    ]);

    const batch = [
      item('known-queued', { ttlSeconds: 60 }),
      item('known-live', { sessionId: session, ttlSeconds: 0 }),
      item('new-a', { ttlSeconds: 3600 }),
      item('new-a'),
      item('new-a'), // beyond maxQueued 2: queue_full
      item('known-queued'), // known-queued now has 2 queued: queue_full
      item('new-b', { ackTimeoutSeconds: 30 }),
    ];
    const answer = await submit(batch, 2);
    expect(answer.map((r) => r.outcome)).toEqual(['created', 'created', 'created', 'created', 'queue_full', 'queue_full', 'created']);

    const { rows: stored } = await db.pool.query<{ id: string; device_id: string; seq: number; status: string; created_at: Date; expires_at: Date | null }>(
      `select id, device_id, seq, status, created_at, expires_at from actuations where id = any($1::uuid[])`,
      [batch.map((i) => i.id)],
    );
    const byId = new Map(stored.map((r) => [r.id, r]));
    expect(stored).toHaveLength(5);
    answer.forEach((r, i) => {
      expect(r.idx).toBe(i);
      if (r.outcome === 'queue_full') {
        expect([r.id, r.device_id, r.seq, r.status, r.created_at, r.expires_at]).toEqual([null, null, null, null, null, null]);
        expect(byId.has(batch[i]!.id)).toBe(false);
        return;
      }
      const row = byId.get(batch[i]!.id)!;
      expect({ id: r.id, device_id: r.device_id, seq: r.seq, status: r.status, created_at: r.created_at, expires_at: r.expires_at }).toEqual(row);
    });
    expect(answer.map((r) => r.status)).toEqual(['queued', 'sent', 'queued', 'queued', null, null, 'queued']);
    expect(answer.map((r) => r.seq)).toEqual([2, 2, 1, 2, null, null, 1]);
    expect(answer[0]!.superseded).toEqual([]);

    const after = await db.pool.query<{ device_id: string; last_seq: number }>(`select device_id, last_seq from device_counters order by 1`);
    expect(after.rows).toEqual([
      { device_id: 'known-live', last_seq: 2 },
      { device_id: 'known-queued', last_seq: 2 },
      { device_id: 'new-a', last_seq: 2 },
      { device_id: 'new-b', last_seq: 1 },
    ]);
  });
});
