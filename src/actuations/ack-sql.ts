/**
 * Device acknowledgements (acks by id: the `apply_acks` SQL function, migrations/0005).
 * An ack only moves a `sent` actuation of the acking device
 * to `acked` (statusCode < 400) or `failed`; an ack for a final actuation of the same
 * device is recorded in its history as a late ack; an ack naming another device's
 * actuation matches nothing.
 * (Actuations are committed as `sent` before they are written, so an ack never
 * arrives before its `sent`.)
 */
import type { Pool } from '../db/pool.js';

export interface AckById {
  deviceId: string;
  id: string;
  statusCode: number;
  reasonPhrase: string | null;
}

export interface AckOutcome {
  outcome: 'acked' | 'failed' | 'late' | 'unknown';
  sourceKind?: string;
  createdAt?: Date;
}

export async function applyAcks(pool: Pool, acks: AckById[]): Promise<AckOutcome[]> {
  const { rows } = await pool.query<{ id: string; device_id: string; outcome: AckOutcome['outcome']; source_kind: string; created_at: Date }>(
    'select * from apply_acks($1::uuid[], $2::text[], $3::int[], $4::text[])',
    [acks.map((a) => a.id), acks.map((a) => a.deviceId), acks.map((a) => a.statusCode), acks.map((a) => a.reasonPhrase)],
  );
  const byKey = new Map(rows.map((r) => [`${r.device_id}\u0000${r.id}`, { outcome: r.outcome, sourceKind: r.source_kind, createdAt: r.created_at }]));
  return acks.map((a) => byKey.get(`${a.deviceId}\u0000${a.id}`) ?? { outcome: 'unknown' });
}

/** `{"type":"ack","upTo":seq}`: every sent actuation of the device up to seq is acked. Returns how many. */
export async function ackUpTo(pool: Pool, deviceId: string, upTo: number): Promise<number> {
  const { rows } = await pool.query<{ count: number }>(
    `with applied as (
       update actuations a
          set status = 'acked', completed_at = now(), status_code = 200,
              history = a.history || jsonb_build_array(jsonb_build_object('status', 'acked', 'at', now(), 'upTo', $2::bigint))
        where a.device_id = $1 and a.seq <= $2 and a.status = 'sent'
       returning a.id
     ), counters as (
       update device_counters set has_acked = true where device_id = $1 and not has_acked
     )
     select count(*)::int as count from applied`,
    [deviceId, upTo],
  );
  return rows[0]?.count ?? 0;
}
