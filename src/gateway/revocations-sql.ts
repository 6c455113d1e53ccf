/** The `device_token_revocations` table (migrations/0010_audit_and_revocations.sql), one function per statement. */
import type { Pool } from '../db/pool.js';

/** Carries `{ deviceId, revokedBefore }` (ms since the epoch), sent with the commit of a revocation. */
export const TOKENS_REVOKED_CHANNEL = 'device_tokens_revoked';

export interface Revocation {
  deviceId: string;
  /** Tokens of the device issued before this (ms since the epoch, the database's clock) are refused. */
  revokedBefore: number;
}

/**
 * Refuses the device's tokens issued before now (the database's clock); a later
 * revocation moves the time forward, never back. NOTIFYs every instance with the commit.
 * `visibleSql` (built by `deviceVisibleSql('$1', …)` over `params`) limits it to devices
 * the caller may see: for any other, nothing is written and the answer is null.
 */
export async function revokeDeviceTokens(pool: Pool, params: unknown[], visibleSql: string): Promise<Revocation | null> {
  const { rows } = await pool.query<{ device_id: string; revoked_before_ms: string }>(
    `with revoked as (
       insert into device_token_revocations as r (device_id, revoked_before)
       select $1, now() where ${visibleSql}
       on conflict (device_id) do update set revoked_before = greatest(r.revoked_before, excluded.revoked_before), updated_at = now()
       returning device_id, (extract(epoch from revoked_before) * 1000)::bigint::text as revoked_before_ms
     )
     select device_id, revoked_before_ms,
            pg_notify($2, json_build_object('deviceId', device_id, 'revokedBefore', revoked_before_ms::bigint)::text)
       from revoked`,
    params,
  );
  const row = rows[0];
  return row ? { deviceId: row.device_id, revokedBefore: Number(row.revoked_before_ms) } : null;
}

/** Revocations changed after `since` (the database's clock; all of them without it), and the latest change time seen. */
export async function revocationsChangedSince(pool: Pool, since: Date | null): Promise<{ revocations: Revocation[]; latest: Date | null }> {
  const { rows } = await pool.query<{ device_id: string; revoked_before_ms: string; updated_at: Date }>(
    `select device_id, (extract(epoch from revoked_before) * 1000)::bigint::text as revoked_before_ms, updated_at
       from device_token_revocations
      where $1::timestamptz is null or updated_at > $1`,
    [since],
  );
  let latest: Date | null = null;
  for (const row of rows) if (latest === null || row.updated_at > latest) latest = row.updated_at;
  return { revocations: rows.map((r) => ({ deviceId: r.device_id, revokedBefore: Number(r.revoked_before_ms) })), latest };
}
