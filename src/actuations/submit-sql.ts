/**
 * Inserting a batch of actuations: one call of the `submit_actuations` SQL function
 * (migrations/0004, 0005), so a whole batch costs one round trip and one commit. The
 * function takes the devices' counter locks first and decides everything under
 * them: idempotency, queue limit, gap-free seq, collapse, direct sending, and one NOTIFY.
 */
import type { Pool } from '../db/pool.js';
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
  created_at: Date | null;
  expires_at: Date | null;
  superseded_source_kinds: string[] | null;
}

export interface InsertResult {
  results: SubmitResult[];
  /** Source kinds of the older actuations this batch superseded (metrics). */
  supersededSourceKinds: string[];
}

export async function insertActuations(
  pool: Pool,
  items: PreparedActuation[],
  options: { maxQueuedPerDevice: number; notifyDevices: string[]; instanceId: string },
): Promise<InsertResult> {
  const { rows } = await pool.query<Row>('select * from submit_actuations($1::jsonb, $2, $3::text[], $4)', [
    JSON.stringify(items),
    options.maxQueuedPerDevice,
    options.notifyDevices,
    options.instanceId,
  ]);
  const results = rows.map((row): SubmitResult => {
    if (row.outcome === 'queue_full') return { outcome: 'queue_full', limit: options.maxQueuedPerDevice };
    const actuation: ActuationSummary = {
      id: row.id!,
      deviceId: row.device_id!,
      seq: row.seq!,
      status: row.status!,
      createdAt: row.created_at!,
      expiresAt: row.expires_at,
    };
    return { outcome: row.outcome, actuation };
  });
  return { results, supersededSourceKinds: rows[0]?.superseded_source_kinds ?? [] };
}
