/**
 * The transitions of actuations that TypeScript writes, one statement each, in this one
 * module; the others are made inside the SQL functions of migrations/0015_lifecycle.sql
 * (queued, direct sent and superseded by `submit_actuations`, called from submit-sql.ts;
 * sent by `claim_actuations`, called from delivery-sql.ts). Every history entry is built
 * by `actuation_history_entry`, and the transitions that several paths make by one SQL
 * unit: `actuation_acked` for an ack by id and an `upTo`, `actuation_sent` for a claim
 * and a direct send.
 *
 * Every statement here also records the change feed's event of each row it moved, in the
 * same statement (`recorded` below: `actuation_event`, migration 0020), as the SQL
 * functions do for theirs.
 *
 * A function that runs its statement on the pool (its own transaction) reports the rows
 * to `lifecycle` when the statement has returned, i.e. committed; the sweep's statements
 * run in the sweeper's transaction and return their events for it to report after its
 * commit.
 */
import type { Pool, PoolClient } from '../db/pool.js';
import { deviceVisibleSql, type AccountScope } from '../devices/account-scope.js';
import { transition, type ActuationEvent, type Lifecycle, type TransitionPath } from './lifecycle.js';
import type { ActuationStatus } from './types.js';

export interface AckById {
  deviceId: string;
  id: string;
  statusCode: number;
  reasonPhrase: string | null;
}

export interface AckOutcome {
  outcome: 'acked' | 'failed' | 'late' | 'unknown';
}

/** The columns a transition's event needs, as the statements below return them. */
const EVENT_COLUMNS = `a.id, a.device_id as "deviceId", a.seq, a.source->>'kind' as source, a.created_at as "createdAt",
  a.last_session_id as "sessionId", a.last_instance_id as "instanceId"`;

/** EVENT_COLUMNS as the `moved` rows of `recorded` name them. */
const MOVED_COLUMNS = `m.id, m."deviceId", m.seq, m.source, m."createdAt", m."sessionId", m."instanceId"`;

/**
 * `moved` (an UPDATE … RETURNING EVENT_COLUMNS, `a as actuation`, and whatever `previous`
 * reads) with the change-feed event of each row it moved, entering `status` from
 * `previous` (an SQL expression over `m`), in one statement. Other CTEs (`more`) may
 * follow; the statement returns the moved rows' EVENT_COLUMNS.
 */
function recorded(moved: string, status: ActuationStatus, previous: string, more = ''): string {
  return `with moved as (${moved}), recorded as (
       insert into actuation_event_rows
       select e.* from moved m cross join lateral actuation_event(m.actuation, '${status}', ${previous}) e order by m."deviceId", m.seq
     )${more}
     select ${MOVED_COLUMNS} from moved m`;
}

interface EventRow {
  id: string;
  deviceId: string;
  seq: number;
  source: string;
  createdAt: Date;
  sessionId: number | null;
  instanceId: string | null;
}

/** The one way an actuation becomes `cancelled` (a DELETE, or its job stopped). */
const CANCEL_SET = `status = 'cancelled', completed_at = now(), history = a.history || actuation_history_entry('cancelled', now())`;

function events(status: ActuationStatus, via: TransitionPath, rows: EventRow[], at = new Date()): ActuationEvent[] {
  return rows.map((r) => transition(status, via, { actuationId: r.id, deviceId: r.deviceId, seq: r.seq, source: r.source, createdAt: r.createdAt, sessionId: r.sessionId, instanceId: r.instanceId }, at));
}

/**
 * Acks by id (the `apply_acks` SQL function): a `sent` actuation of the acking device
 * becomes `acked` (statusCode < 400) or `failed`; an ack for a final actuation of the same
 * device is recorded in its history as a late ack; an ack naming another device's
 * actuation matches nothing. (Actuations are committed as `sent` before they are written,
 * so an ack never arrives before its `sent`.)
 */
export async function applyAcks(pool: Pool, acks: AckById[], lifecycle?: Lifecycle): Promise<AckOutcome[]> {
  const { rows } = await pool.query<{
    id: string;
    device_id: string;
    outcome: AckOutcome['outcome'];
    source_kind: string;
    created_at: Date;
    seq: number;
    session_id: number | null;
    instance_id: string | null;
    status_code: number | null;
    reason_phrase: string | null;
  }>('select * from apply_acks($1::uuid[], $2::text[], $3::int[], $4::text[])', [
    acks.map((a) => a.id),
    acks.map((a) => a.deviceId),
    acks.map((a) => a.statusCode),
    acks.map((a) => a.reasonPhrase),
  ]);
  const byKey = new Map(rows.map((r) => [`${r.device_id}\u0000${r.id}`, r]));
  const at = new Date();
  const committed: ActuationEvent[] = [];
  // A batch may ack one actuation twice: the database moved it once (one row per id), so one event.
  const moved = new Set<string>();
  const outcomes = acks.map((a): AckOutcome => {
    const r = byKey.get(`${a.deviceId}\u0000${a.id}`);
    if (!r) return { outcome: 'unknown' };
    if ((r.outcome === 'acked' || r.outcome === 'failed') && !moved.has(r.id)) {
      moved.add(r.id);
      committed.push(
        transition(r.outcome, 'ack', { actuationId: r.id, deviceId: r.device_id, seq: r.seq, source: r.source_kind, createdAt: r.created_at, statusCode: r.status_code, reasonPhrase: r.reason_phrase, sessionId: r.session_id, instanceId: r.instance_id }, at),
      );
    }
    return { outcome: r.outcome };
  });
  lifecycle?.committed(committed);
  return outcomes;
}

/** `{"type":"ack","upTo":seq}`: every sent actuation of the device up to seq is acked (`actuation_acked`, code 200). Returns how many. */
export async function ackUpTo(pool: Pool, deviceId: string, upTo: number, lifecycle?: Lifecycle): Promise<number> {
  const { rows } = await pool.query<EventRow>(
    recorded(
      `update actuations a
          set (status, completed_at, status_code, reason_phrase, history)
            = (r.status, r.completed_at, r.status_code, r.reason_phrase, a.history || r.entry)
         from actuation_acked(200, null, now(), jsonb_build_object('upTo', $2::bigint)) r
        where a.device_id = $1 and a.seq <= $2 and a.status = 'sent'
       returning ${EVENT_COLUMNS}, a as actuation`,
      'acked',
      `'sent'`,
      `, counters as (
       update device_counters set has_acked = true where device_id = $1 and not has_acked
     )`,
    ),
    [deviceId, upTo],
  );
  lifecycle?.committed(events('acked', 'ack_up_to', rows).map((e) => ({ ...e, statusCode: 200 })));
  return rows.length;
}

/** Undoes the claim of actuations that were not written (socket closed): back to `queued` (only those still `sent`). */
export async function requeueUnwritten(pool: Pool, ids: string[], lifecycle?: Lifecycle, reason = 'socket closed before the write'): Promise<void> {
  if (ids.length === 0) return;
  const { rows } = await pool.query<EventRow>(
    recorded(
      `update actuations a
          set status = 'queued', sent_at = null, ack_deadline_at = null,
              history = a.history || actuation_history_entry('queued', now(), jsonb_build_object('reason', $2::text))
        where a.id = any($1::uuid[]) and a.status = 'sent'
       returning ${EVENT_COLUMNS}, a as actuation`,
      'queued',
      `'sent'`,
    ),
    [ids, reason],
  );
  // Queued again: no session holds it.
  lifecycle?.committed(events('queued', 'requeue', rows).map((e) => ({ ...e, sessionId: null, instanceId: null })));
}

/**
 * Cancels a queued actuation; returns the row's status afterwards, or null if there is no
 * such actuation or its device is not visible to `scope` (then nothing is changed).
 */
export async function cancelQueued(pool: Pool, id: string, scope: AccountScope, lifecycle?: Lifecycle): Promise<{ cancelled: boolean; status: ActuationStatus } | null> {
  const params: unknown[] = [id];
  const visible = deviceVisibleSql('a.device_id', scope, params);
  const { rows } = await pool.query<EventRow & { cancelled: boolean; status: ActuationStatus }>(
    `with cancelled as (
       update actuations a
          set ${CANCEL_SET}
        where a.id = $1 and a.status = 'queued' and ${visible}
       returning a.status, ${EVENT_COLUMNS}, a as actuation
     ), recorded as (
       insert into actuation_event_rows
       select e.* from cancelled m cross join lateral actuation_event(m.actuation, 'cancelled', 'queued') e
     )
     select true as cancelled, m.status, ${MOVED_COLUMNS} from cancelled m
     union all
     select false, a.status, ${EVENT_COLUMNS} from actuations a where a.id = $1 and ${visible} and not exists (select 1 from cancelled)`,
    params,
  );
  const row = rows[0];
  if (!row) return null;
  if (row.cancelled) lifecycle?.committed(events('cancelled', 'cancel', [row]));
  return { cancelled: row.cancelled, status: row.status };
}

/**
 * Cancels the queued actuations of a stopped job (found by their idempotency key
 * `job:<jobId>:<deviceId>`, so also those whose target row does not name them yet);
 * returns how many.
 */
export async function cancelQueuedOfJob(pool: Pool, jobId: string, lifecycle?: Lifecycle): Promise<number> {
  const { rows } = await pool.query<EventRow>(
    recorded(
      `update actuations a
          set ${CANCEL_SET}
         from job_targets t
        where t.job_id = $1 and a.device_id = t.device_id and a.idempotency_key = 'job:' || $1::text || ':' || t.device_id
          and a.status = 'queued'
       returning ${EVENT_COLUMNS}, a as actuation`,
      'cancelled',
      `'queued'`,
    ),
    [jobId],
  );
  lifecycle?.committed(events('cancelled', 'job_stop', rows));
  return rows.length;
}

/** Sent actuations past their ack deadline become `timed_out` (at most `limit`); in the caller's transaction. */
export async function timeOutOverdue(client: PoolClient, limit: number): Promise<ActuationEvent[]> {
  const { rows } = await client.query<EventRow>(
    recorded(
      `update actuations a
          set status = 'timed_out', completed_at = now(), history = a.history || actuation_history_entry('timed_out', now())
        where a.id in (select id from actuations
                        where status = 'sent' and ack_deadline_at is not null and ack_deadline_at <= now()
                        order by ack_deadline_at limit $1 for update skip locked)
       returning ${EVENT_COLUMNS}, a as actuation`,
      'timed_out',
      `'sent'`,
    ),
    [limit],
  );
  return events('timed_out', 'sweep', rows);
}

/** Queued or sent actuations past `expires_at` become `expired` (at most `limit`); in the caller's transaction. */
export async function expireOverdue(client: PoolClient, limit: number): Promise<ActuationEvent[]> {
  const { rows } = await client.query<EventRow>(
    recorded(
      // The status each row left (queued or sent), as locked.
      `update actuations a
          set status = 'expired', completed_at = now(), history = a.history || actuation_history_entry('expired', now())
         from (select id, status from actuations
                where status in ('queued', 'sent') and expires_at is not null and expires_at <= now()
                order by expires_at limit $1 for update skip locked) o
        where a.id = o.id
       returning ${EVENT_COLUMNS}, a as actuation, o.status as previous`,
      'expired',
      'm.previous',
    ),
    [limit],
  );
  return events('expired', 'sweep', rows);
}
