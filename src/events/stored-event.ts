/**
 * An event as `events_after` returns it (migration 0020): session and DSS events, and
 * actuation events written before 0020, carry their `data`; an actuation event written
 * since is stored as columns, and its `data` is built here rather than in PostgreSQL
 * (what building a 13-key jsonb per event cost the database is what 0020 removes).
 */

/** The columns of `events_after(…)` beyond `id, type, at, data, device_id, account_id`, as SQL, aliased for `StoredEventColumns`. */
export const STORED_ACTUATION_COLUMNS = `actuation_id as "actuationId", seq, actuation_account_id as "actuationAccountId",
  previous_status as "previousStatus", attempts, status_code as "statusCode", reason_phrase as "reasonPhrase", source,
  session_id as "sessionId", instance_id as "instanceId", superseded_by as "supersededBy"`;

export interface StoredEventColumns {
  type: string;
  data: Record<string, unknown> | null;
  deviceId: string | null;
  actuationId: string | null;
  /** bigint: a string as node-postgres returns it. */
  seq: string | null;
  actuationAccountId: string | null;
  previousStatus: string | null;
  attempts: number | null;
  statusCode: number | null;
  reasonPhrase: string | null;
  source: unknown;
  sessionId: string | null;
  instanceId: string | null;
  supersededBy: string | null;
}

const ACTUATION_TYPE_PREFIX = 'actuation.';

/**
 * The event's `data`: as stored, or built from the columns as SQL's `event_data` (migration
 * 0020) builds it. Keys in the order PostgreSQL's jsonb gives them (shorter first, then
 * bytewise), so the JSON sent is byte for byte what it was when the database built it.
 */
export function storedEventData(row: StoredEventColumns): Record<string, unknown> {
  if (row.data !== null) return row.data;
  return {
    id: row.actuationId,
    seq: row.seq === null ? null : Number(row.seq),
    source: row.source,
    status: row.type.slice(ACTUATION_TYPE_PREFIX.length),
    attempts: row.attempts,
    deviceId: row.deviceId,
    accountId: row.actuationAccountId,
    sessionId: row.sessionId === null ? null : Number(row.sessionId),
    instanceId: row.instanceId,
    statusCode: row.statusCode,
    reasonPhrase: row.reasonPhrase,
    supersededBy: row.supersededBy,
    previousStatus: row.previousStatus,
  };
}
