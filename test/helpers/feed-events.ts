/**
 * Appends rows to `events` (migration 0011) the way the change feed's sequencer does:
 * the next id, committed, then `pg_notify('iotws_events', <last id>)`. Webhooks only read
 * that table, so this is the interface they consume, not a stand-in for their code.
 */
import type { Pool } from '../../src/db/pool.js';

export interface FeedEvent {
  type: string;
  data?: Record<string, unknown>;
  deviceId?: string;
  accountId?: string;
  /** When it happened (default: now). */
  at?: Date;
}

/** Appends the events in order (one statement each, ids increasing), then one NOTIFY; returns their ids. */
export async function appendEvents(pool: Pool, events: FeedEvent[]): Promise<number[]> {
  const ids: number[] = [];
  for (const e of events) {
    const { rows } = await pool.query<{ id: number }>(
      `insert into events (id, type, at, data, device_id, account_id)
       select coalesce(max(id), 0) + 1, $1, $2, $3, $4, $5 from events returning id`,
      [e.type, e.at ?? new Date(), e.data ?? { deviceId: e.deviceId ?? null }, e.deviceId ?? null, e.accountId ?? null],
    );
    ids.push(rows[0]!.id);
  }
  if (ids.length > 0) await pool.query(`select pg_notify('iotws_events', $1)`, [String(ids.at(-1))]);
  return ids;
}
