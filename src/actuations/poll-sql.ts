/**
 * The dispatcher's periodic safety net (missed notifications): which of the given devices
 * have queued actuations. A read through the `queued` partial index that locks nothing,
 * so that only those devices are claimed for; claiming for every live device each poll
 * held all of them out of direct sends for the claim's duration (see the dispatcher).
 */
import type { Pool } from '../db/pool.js';

export async function devicesWithQueued(pool: Pool, deviceIds: string[]): Promise<string[]> {
  if (deviceIds.length === 0) return [];
  const { rows } = await pool.query<{ device_id: string }>(
    `select t.device_id from unnest($1::text[]) as t(device_id)
      where exists (select 1 from actuations a where a.device_id = t.device_id and a.status = 'queued')`,
    [deviceIds],
  );
  return rows.map((r) => r.device_id);
}
