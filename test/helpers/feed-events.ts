/**
 * Appends events the way the change feed records them (migration 0019): rows inserted
 * into `event_rows`, committed, then numbered by `sequence_events` (the real sequencer's
 * pass, or the running server's, whichever takes the lock), which NOTIFYs
 * `iotws_events`. Webhooks only read numbered events, so this is the interface they consume.
 */
import type { Pool } from '../../src/db/pool.js';
import { eventually } from './eventually.js';

export interface FeedEvent {
  type: string;
  data?: Record<string, unknown>;
  deviceId?: string;
  accountId?: string;
  /** When it happened (default: now). */
  at?: Date;
}

/** Appends the events in order (one statement each, ids increasing) and waits until they are numbered; returns their ids. */
export async function appendEvents(pool: Pool, events: FeedEvent[]): Promise<number[]> {
  const positions: string[] = [];
  for (const e of events) {
    const { rows } = await pool.query<{ pos: string }>(
      `insert into event_rows (type, at, data, device_id, account_id) values ($1, $2, $3, $4, $5) returning pos`,
      [e.type, e.at ?? new Date(), e.data ?? { deviceId: e.deviceId ?? null }, e.deviceId ?? null, e.accountId ?? null],
    );
    positions.push(rows[0]!.pos);
  }
  if (positions.length === 0) return [];
  const numbered = await eventually(
    async () => {
      await pool.query('select * from sequence_events(1000)');
      const { rows } = await pool.query<{ id: string }>('select id from events where pos = any($1::bigint[]) order by id', [positions]);
      return rows.map((r) => Number(r.id));
    },
    (ids) => ids.length === positions.length,
  );
  return numbered;
}

/** `count` events of `type` in one statement (devices `<devicePrefix><n>`, n from 1), numbered like `appendEvents`; returns their ids in order. */
export async function appendManyEvents(pool: Pool, type: string, count: number, devicePrefix: string): Promise<number[]> {
  const { rows } = await pool.query<{ pos: string }>(
    `insert into event_rows (type, data, device_id)
     select $1, jsonb_build_object('deviceId', $3 || i), $3 || i from generate_series(1, $2::int) i order by i
     returning pos`,
    [type, count, devicePrefix],
  );
  const positions = rows.map((r) => r.pos);
  return eventually(
    async () => {
      await pool.query('select * from sequence_events(100000)');
      const { rows: numbered } = await pool.query<{ id: string }>('select id from events where pos = any($1::bigint[]) order by id', [positions]);
      return numbered.map((r) => Number(r.id));
    },
    (ids) => ids.length === positions.length,
  );
}
