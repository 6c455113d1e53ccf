/**
 * Delivery: claiming a device's pending actuations and recording that they were
 * written to its socket. Both run in the claim transaction, so a row is `sent`
 * only if this instance wrote it, and never written by two instances at once:
 * the rows are locked (`for update skip locked`) and the claim only succeeds
 * while the device's session on this instance is still the open one.
 */
import type { PoolClient } from '../db/pool.js';

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

const QUEUED = `a.status = 'queued'`;
const QUEUED_OR_UNACKED = `(a.status = 'queued'
   or (a.status = 'sent' and t.redeliver and c.has_acked and a.last_session_id is distinct from t.session_id))`;

/**
 * Locks up to `perDevice` pending actuations of each target device (and at most `limit`
 * in all), oldest device first, each device's in seq order.
 */
export async function claimPending(client: PoolClient, targets: DeliveryTarget[], perDevice: number, limit: number): Promise<ClaimedActuation[]> {
  // Without redelivery the query only touches queued rows (their own partial index).
  const PENDING = targets.some((t) => t.redeliver) ? QUEUED_OR_UNACKED : QUEUED;
  const { rows } = await client.query<ClaimedActuation>(
    `with t as (
       select * from unnest($1::text[], $2::bigint[], $3::boolean[]) as t(device_id, session_id, redeliver)
     ), candidates as (
       select a.id, a.device_id, min(a.created_at) over (partition by a.device_id) as device_oldest,
              row_number() over (partition by a.device_id order by a.seq) as position
         from actuations a
         join t on t.device_id = a.device_id
         join device_counters c on c.device_id = a.device_id
        where ${PENDING}
     ), chosen as (
       select id from candidates where position <= $4 order by device_oldest, device_id, position limit $5
     )
     select a.id, a.device_id as "deviceId", a.seq, t.session_id as "sessionId", a.account_id as "accountId",
            a.gateway_id as "gatewayId", a.component_id as "componentId", a.command, a.params,
            a.created_at as "createdAt", a.source->>'kind' as "sourceKind"
       from actuations a
       join t on t.device_id = a.device_id
       join device_counters c on c.device_id = a.device_id
       join device_sessions s on s.id = t.session_id and s.disconnected_at is null
      where a.id in (select id from chosen) and ${PENDING}
      order by a.device_id, a.seq
        for update of a skip locked`,
    [targets.map((t) => t.deviceId), targets.map((t) => t.sessionId), targets.map((t) => t.redeliver), perDevice, limit],
  );
  return rows;
}

export async function markSent(client: PoolClient, sent: { id: string; sessionId: number }[], instanceId: string): Promise<void> {
  if (sent.length === 0) return;
  await client.query(
    `update actuations a
        set status = 'sent', sent_at = now(), attempts = a.attempts + 1,
            last_session_id = v.session_id, last_instance_id = $3,
            ack_deadline_at = case when a.ack_timeout_seconds is not null then now() + a.ack_timeout_seconds * interval '1 second' end,
            history = a.history || jsonb_build_array(jsonb_build_object(
              'status', 'sent', 'at', now(), 'attempt', a.attempts + 1, 'sessionId', v.session_id, 'instanceId', $3::text))
       from unnest($1::uuid[], $2::bigint[]) as v(id, session_id)
      where a.id = v.id`,
    [sent.map((s) => s.id), sent.map((s) => s.sessionId), instanceId],
  );
}
