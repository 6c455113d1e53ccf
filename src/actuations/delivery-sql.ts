/**
 * Delivery: one statement claims a device's pending actuations and marks them
 * `sent` (committed before they are written, so a device's ack can never arrive
 * before its actuation is `sent`). Rows are locked with `for update skip locked`
 * and claimed only while the device's session on this instance is still the open
 * one, so no two instances ever send the same actuation. An actuation that could
 * not be written after all (the socket closed meanwhile) is put back in the queue.
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
 * in all), oldest device first, and marks them sent. Returned in device, seq order.
 * Each device's rows are read through its partial index, `perDevice` at most, so a
 * long queue costs no more than a short one.
 */
export async function claimPending(
  pool: Pool,
  targets: DeliveryTarget[],
  options: { perDevice: number; limit: number; instanceId: string },
): Promise<ClaimedActuation[]> {
  const redeliver = targets.some((t) => t.redeliver);
  // Unacked rows are only looked at for redelivery (devices that ack, in a new session).
  const unacked = redeliver
    ? `union all
       select a.id, a.device_id, a.seq, a.created_at, t.session_id from t
         join device_counters c on c.device_id = t.device_id and c.has_acked
         cross join lateral (
           select a.id, a.device_id, a.seq, a.created_at from actuations a
            where a.device_id = t.device_id and a.status = 'sent' and a.last_session_id is distinct from t.session_id
            order by a.seq limit $4) a
        where t.redeliver`
    : '';
  const { rows } = await pool.query<ClaimedActuation>(
    `with t as (
       -- Only targets whose session here is still the device's open one.
       select t.* from unnest($1::text[], $2::bigint[], $3::boolean[]) as t(device_id, session_id, redeliver)
         join device_sessions s on s.id = t.session_id and s.disconnected_at is null
     ), pending as (
       select a.id, a.device_id, a.seq, a.created_at, t.session_id from t
        cross join lateral (
          select a.id, a.device_id, a.seq, a.created_at from actuations a
           where a.device_id = t.device_id and a.status = 'queued'
           order by a.seq limit $4) a
       ${unacked}
     ), chosen as (
       select p.id, p.session_id from (
         select p.*, min(p.created_at) over (partition by p.device_id) as device_oldest,
                row_number() over (partition by p.device_id order by p.seq) as position
           from pending p) p
        where p.position <= $4
        order by p.device_oldest, p.device_id, p.position limit $5
     ), locked as (
       -- Driven from the chosen ids (primary key lookups), never from the devices' whole history.
       select a.id, ch.session_id
         from chosen ch
         join actuations a on a.id = ch.id
        where a.status in ('queued', 'sent')
          for update of a skip locked
     )
     update actuations a
        set status = 'sent', sent_at = now(), attempts = a.attempts + 1,
            last_session_id = l.session_id, last_instance_id = $6,
            ack_deadline_at = case when a.ack_timeout_seconds is not null then now() + a.ack_timeout_seconds * interval '1 second' end,
            history = a.history || jsonb_build_array(jsonb_build_object(
              'status', 'sent', 'at', now(), 'attempt', a.attempts + 1, 'sessionId', l.session_id, 'instanceId', $6::text))
       from locked l
      where a.id = l.id
     returning a.id, a.device_id as "deviceId", a.seq, l.session_id as "sessionId", a.account_id as "accountId",
               a.gateway_id as "gatewayId", a.component_id as "componentId", a.command, a.params,
               a.created_at as "createdAt", a.source->>'kind' as "sourceKind"`,
    [targets.map((t) => t.deviceId), targets.map((t) => t.sessionId), targets.map((t) => t.redeliver), options.perDevice, options.limit, options.instanceId],
  );
  return rows.sort((x, y) => (x.deviceId < y.deviceId ? -1 : x.deviceId > y.deviceId ? 1 : x.seq - y.seq));
}

/** Undoes the claim of actuations that were not written (socket closed): back to `queued`, in order. */
export async function requeueUnwritten(pool: Pool, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await pool.query(
    `update actuations a
        set status = 'queued', sent_at = null, ack_deadline_at = null,
            history = a.history || jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now(), 'reason', 'socket closed before the write'))
      where a.id = any($1::uuid[]) and a.status = 'sent'`,
    [ids],
  );
}
