/**
 * Delivery: one call of the `claim_actuations` SQL function (migrations/0005) claims
 * the target devices' pending actuations and marks them `sent` (committed before they
 * are written, so a device's ack can never arrive before its actuation is `sent`).
 * Rows are locked with `for update skip locked` and claimed only while the device's
 * session on this instance is still the open one, so no two instances ever send the
 * same actuation. An actuation that could not be written after all (the socket closed
 * meanwhile) is put back in the queue.
 */
import type { Pool } from '../db/pool.js';

export interface DeliveryTarget {
  deviceId: string;
  sessionId: number;
  /** Re-send actuations sent in an earlier session and never acked (device must be one that acks). */
  redeliver: boolean;
}

export interface ClaimedActuation {
  id: string;
  deviceId: string;
  seq: number;
  sessionId: number;
  accountId: string | null;
  gatewayId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
  createdAt: Date;
  sourceKind: string;
}

/**
 * Claims up to `perDevice` pending actuations of each target device (and at most `limit`
 * in all), oldest device first, and marks them sent. Each device's rows are read through
 * its partial index, `perDevice` at most, so a long queue costs no more than a short one.
 */
export interface ClaimResult {
  /** In device, seq order. */
  claimed: ClaimedActuation[];
  /** Backlog claims only: target devices with nothing left of what was pending when they connected. */
  drained: string[];
}

export async function claimPending(
  pool: Pool,
  targets: DeliveryTarget[],
  options: { perDevice: number; limit: number; instanceId: string; backlog: boolean },
): Promise<ClaimResult> {
  const { rows } = await pool.query<ClaimedActuation & { id: string | null }>(
    `select id, device_id as "deviceId", seq, session_id as "sessionId", account_id as "accountId", gateway_id as "gatewayId",
            component_id as "componentId", command, params, created_at as "createdAt", source_kind as "sourceKind"
       from claim_actuations($1::text[], $2::bigint[], $3::boolean[], $4, $5, $6, $7)`,
    [
      targets.map((t) => t.deviceId),
      targets.map((t) => t.sessionId),
      targets.map((t) => t.redeliver),
      options.perDevice,
      options.limit,
      options.instanceId,
      options.backlog,
    ],
  );
  const claimed = rows.filter((r): r is ClaimedActuation => r.id !== null);
  claimed.sort((x, y) => (x.deviceId < y.deviceId ? -1 : x.deviceId > y.deviceId ? 1 : x.seq - y.seq));
  return { claimed, drained: rows.filter((r) => r.id === null).map((r) => r.deviceId) };
}

/** Undoes the claim of actuations that were not written (socket closed): back to `queued`, in order. */
export async function requeueUnwritten(pool: Pool, ids: string[], reason = 'socket closed before the write'): Promise<void> {
  if (ids.length === 0) return;
  await pool.query(
    `update actuations a
        set status = 'queued', sent_at = null, ack_deadline_at = null,
            history = a.history || jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now(), 'reason', $2::text))
      where a.id = any($1::uuid[]) and a.status = 'sent'`,
    [ids, reason],
  );
}

/** Whether the device has `sent` actuations of an earlier session that were never acked (read through the `sent` index). */
export async function hasEarlierUnacked(pool: Pool, deviceId: string, sessionId: number): Promise<boolean> {
  const { rows } = await pool.query<{ found: boolean }>(
    `select exists (select 1 from actuations where device_id = $1 and status = 'sent' and last_session_id is distinct from $2) as found`,
    [deviceId, sessionId],
  );
  return rows[0]?.found === true;
}
