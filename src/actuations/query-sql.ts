/** Reading actuations for the REST API (cancelling is a transition: transitions-sql.ts). */
import type { Pool } from '../db/pool.js';
import type { ActuationSource, ActuationStatus } from './types.js';

export interface ActuationRecord {
  id: string;
  deviceId: string;
  seq: number;
  status: ActuationStatus;
  accountId: string | null;
  gatewayId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
  collapseKey: string | null;
  supersededBy: string | null;
  idempotencyKey: string | null;
  source: ActuationSource;
  createdAt: Date;
  expiresAt: Date | null;
  ackTimeoutSeconds: number | null;
  ackDeadlineAt: Date | null;
  sentAt: Date | null;
  completedAt: Date | null;
  attempts: number;
  lastSessionId: number | null;
  lastInstanceId: string | null;
  statusCode: number | null;
  reasonPhrase: string | null;
  history: Record<string, unknown>[];
}

const COLUMNS = `id, device_id as "deviceId", seq, status, account_id as "accountId", gateway_id as "gatewayId",
  component_id as "componentId", command, params, collapse_key as "collapseKey", superseded_by as "supersededBy",
  idempotency_key as "idempotencyKey", source, created_at as "createdAt", expires_at as "expiresAt",
  ack_timeout_seconds as "ackTimeoutSeconds", ack_deadline_at as "ackDeadlineAt", sent_at as "sentAt",
  completed_at as "completedAt", attempts, last_session_id as "lastSessionId", last_instance_id as "lastInstanceId",
  status_code as "statusCode", reason_phrase as "reasonPhrase", history`;

export async function getActuation(pool: Pool, id: string): Promise<ActuationRecord | null> {
  const { rows } = await pool.query<ActuationRecord>(`select ${COLUMNS} from actuations where id = $1`, [id]);
  return rows[0] ?? null;
}

/** Newest first; `beforeSeq` is the cursor from the previous page. */
export async function listDeviceActuations(
  pool: Pool,
  deviceId: string,
  options: { status: ActuationStatus | null; limit: number; beforeSeq: number | null },
): Promise<ActuationRecord[]> {
  const { rows } = await pool.query<ActuationRecord>(
    `select ${COLUMNS} from actuations
      where device_id = $1 and ($2::text is null or status = $2) and ($3::bigint is null or seq < $3)
      order by seq desc limit $4`,
    [deviceId, options.status, options.beforeSeq, options.limit],
  );
  return rows;
}
