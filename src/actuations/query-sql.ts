/** Reading actuations for the REST API (cancelling is a transition: transitions-sql.ts). */
import type { Pool } from '../db/pool.js';
import { deviceVisibleSql, type AccountScope } from '../devices/account-scope.js';
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

/** The columns of an `ActuationRecord`, for a select from `actuations` (or a subquery of its rows named so). */
export const ACTUATION_COLUMNS = `id, device_id as "deviceId", seq, status, account_id as "accountId", gateway_id as "gatewayId",
  component_id as "componentId", command, params, collapse_key as "collapseKey", superseded_by as "supersededBy",
  idempotency_key as "idempotencyKey", source, created_at as "createdAt", expires_at as "expiresAt",
  ack_timeout_seconds as "ackTimeoutSeconds", ack_deadline_at as "ackDeadlineAt", sent_at as "sentAt",
  completed_at as "completedAt", attempts, last_session_id as "lastSessionId", last_instance_id as "lastInstanceId",
  status_code as "statusCode", reason_phrase as "reasonPhrase", history`;

/** Null for an unknown actuation and for one whose device `scope` does not see alike. */
export async function getActuation(pool: Pool, id: string, scope: AccountScope): Promise<ActuationRecord | null> {
  const params: unknown[] = [id];
  const { rows } = await pool.query<ActuationRecord>(`select ${ACTUATION_COLUMNS} from actuations a where a.id = $1 and ${deviceVisibleSql('a.device_id', scope, params)}`, params);
  return rows[0] ?? null;
}

/** Newest first; `beforeSeq` is the cursor from the previous page. None for a device `scope` does not see. */
export async function listDeviceActuations(
  pool: Pool,
  deviceId: string,
  options: { status: ActuationStatus | null; limit: number; beforeSeq: number | null },
  scope: AccountScope,
): Promise<ActuationRecord[]> {
  const params: unknown[] = [deviceId, options.status, options.beforeSeq, options.limit];
  const { rows } = await pool.query<ActuationRecord>(
    `select ${ACTUATION_COLUMNS} from actuations
      where device_id = $1 and ($2::text is null or status = $2) and ($3::bigint is null or seq < $3)
        and ${deviceVisibleSql('$1', scope, params)}
      order by seq desc limit $4`,
    params,
  );
  return rows;
}
