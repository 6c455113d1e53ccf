/**
 * Delivery: one call of the `claim_actuations` SQL function (migrations/0005) claims
 * the target devices' pending actuations and marks them `sent` (committed before they
 * are written, so a device's ack can never arrive before its actuation is `sent`).
 * Rows are locked with `for update skip locked` and claimed only while the device's
 * session on this instance is still the open one, so no two instances ever send the
 * same actuation. An actuation that could not be written after all (the socket closed
 * meanwhile) is put back in the queue (`requeueUnwritten`, transitions-sql.ts).
 */
import type { Pool } from '../db/pool.js';
import { transition, type Lifecycle } from './lifecycle.js';

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
  lifecycle?: Lifecycle,
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
  if (lifecycle && claimed.length > 0) lifecycle.committed(sentEvents(claimed, 'claim', options.instanceId));
  return { claimed, drained: rows.filter((r) => r.id === null).map((r) => r.deviceId) };
}

/** Whether the device has `sent` actuations of an earlier session that were never acked (read through the `sent` index). */
export async function hasEarlierUnacked(pool: Pool, deviceId: string, sessionId: number): Promise<boolean> {
  const { rows } = await pool.query<{ found: boolean }>(
    `select exists (select 1 from actuations where device_id = $1 and status = 'sent' and last_session_id is distinct from $2) as found`,
    [deviceId, sessionId],
  );
  return rows[0]?.found === true;
}

/** The `sent` events of actuations committed as sent (claimed, or inserted as sent by a direct send). */
export function sentEvents(sent: ClaimedActuation[], via: 'claim' | 'direct_send', instanceId: string, at = new Date()) {
  return sent.map((a) =>
    transition('sent', via, { actuationId: a.id, deviceId: a.deviceId, seq: a.seq, source: a.sourceKind, createdAt: a.createdAt, sessionId: a.sessionId, instanceId }, at),
  );
}
