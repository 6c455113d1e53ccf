/**
 * Inserting a batch of actuations: one call of the `submit_actuations` SQL function
 * (migrations/0004, 0005), so a whole batch costs one round trip and one commit. The
 * function takes the devices' counter locks first and decides everything under
 * them: idempotency, queue limit, gap-free seq, collapse, direct sending, and one NOTIFY.
 * Once it has returned (committed), its transitions are reported to the lifecycle: each
 * created actuation's `queued`, a direct send's `sent`, and what it superseded.
 */
import type { Pool } from '../db/pool.js';
import { transition, type ActuationEvent, type Lifecycle } from './lifecycle.js';
import type { ActuationSource, ActuationStatus, ActuationSummary, SubmitResult } from './types.js';

/** A NewActuation with its id generated and defaults applied. */
export interface PreparedActuation {
  id: string;
  deviceId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
  accountId: string | null;
  gatewayId: string;
  ttlSeconds: number;
  ackTimeoutSeconds: number | null;
  collapseKey: string | null;
  idempotencyKey: string | null;
  source: ActuationSource;
  /** Set when this instance offers to write the actuation at once to this open session of the device. */
  sessionId?: number;
}

export const ACTUATION_READY_CHANNEL = 'actuation_ready';

interface Row {
  idx: number;
  outcome: 'created' | 'existing' | 'queue_full';
  id: string | null;
  device_id: string | null;
  seq: number | null;
  status: ActuationStatus | null;
  /** Epoch milliseconds (floored, as pg's own timestamptz parser gives them), not timestamptz text: see below. */
  created_ms: number | null;
  expires_ms: number | null;
  /** First row only: the older actuations this batch superseded. */
  superseded: { id: string; deviceId: string; seq: number; sourceKind: string; createdAt: string; supersededBy: string }[] | null;
}

export async function insertActuations(
  pool: Pool,
  items: PreparedActuation[],
  options: { maxQueuedPerDevice: number; notifyDevices: string[]; instanceId: string },
  lifecycle?: Lifecycle,
): Promise<SubmitResult[]> {
  // Per row, the times as epoch ms and the notified devices as one JSON text: parsing timestamptz text
  // (a regex per value) and building a text[] literal (element by element) were a sixth of what a
  // batch allocated in a sampling heap profile (README "Jobs against the bulk endpoint").
  const { rows } = await pool.query<Row>(
    `select idx, outcome, id, device_id, seq, status,
            floor(extract(epoch from created_at) * 1000)::float8 as created_ms, floor(extract(epoch from expires_at) * 1000)::float8 as expires_ms, superseded
       from submit_actuations($1::jsonb, $2, array(select json_array_elements_text($3::json)), $4)`,
    [JSON.stringify(items), options.maxQueuedPerDevice, JSON.stringify(options.notifyDevices), options.instanceId],
  );
  const results = rows.map((row): SubmitResult => {
    if (row.outcome === 'queue_full') return { outcome: 'queue_full', limit: options.maxQueuedPerDevice };
    const actuation: ActuationSummary = {
      id: row.id!,
      deviceId: row.device_id!,
      seq: row.seq!,
      status: row.status!,
      createdAt: new Date(row.created_ms!),
      expiresAt: row.expires_ms === null ? null : new Date(row.expires_ms),
    };
    return { outcome: row.outcome, actuation };
  });
  if (lifecycle) lifecycle.committed(committedTransitions(items, results, rows[0]?.superseded ?? [], options.instanceId));
  return results;
}

function committedTransitions(items: PreparedActuation[], results: SubmitResult[], superseded: NonNullable<Row['superseded']>, instanceId: string): ActuationEvent[] {
  const at = new Date();
  const events: ActuationEvent[] = [];
  results.forEach((r, i) => {
    if (r.outcome !== 'created') return;
    const item = items[i]!;
    const { id: actuationId, deviceId, seq, createdAt } = r.actuation;
    const source = item.source.kind;
    events.push(transition('queued', 'submit', { actuationId, deviceId, seq, source, createdAt }, at));
    if (r.actuation.status === 'sent') events.push(transition('sent', 'direct_send', { actuationId, deviceId, seq, source, createdAt, sessionId: item.sessionId ?? null, instanceId }, at));
  });
  for (const s of superseded) {
    events.push(transition('superseded', 'supersede', { actuationId: s.id, deviceId: s.deviceId, seq: s.seq, source: s.sourceKind, createdAt: new Date(s.createdAt), supersededBy: s.supersededBy }, at));
  }
  return events;
}
