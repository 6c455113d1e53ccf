/**
 * The sender's statements: claim endpoints (a lease, `for update skip locked`), find an
 * endpoint's head event, record an attempt's outcome (or a batch of 2xx outcomes). Every write after the claim is
 * conditional on `lease_owner` still being this instance, so a sender whose lease ran
 * out (and was taken over) changes nothing.
 */
import type pg from 'pg';
import { namedStatement } from '../db/named-statement.js';
import { STORED_ACTUATION_COLUMNS, storedEventData, type StoredEventColumns } from '../events/stored-event.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** An endpoint as its sender needs it, read fresh before every attempt (a PATCH applies at once). */
export interface HeldWebhook {
  id: string;
  url: string;
  secret: string;
  eventTypes: string[];
  accounts: string[] | null;
  cursor: number;
}

export interface HeadEvent {
  id: number;
  type: string;
  at: Date;
  data: unknown;
  /** Attempts already made at this event (0 when none). */
  attempts: number;
}

/** Events looked at per head search: an endpoint subscribed to rare types skips the others this many at a time. */
export const SCAN_WINDOW = 1_000;

/** Prepared (named): run at every tick, so at every sequencing pass's NOTIFY; its planning cost ten times its execution. */
const CLAIM_WEBHOOKS = namedStatement(
  'webhooks_claim',
  `with candidates as (
     select w.id from webhooks w
     where w.enabled
       and (w.not_before is null or w.not_before <= now())
       and (w.lease_until is null or w.lease_until < now())
       and w.cursor < (select s.last_id from event_sequencer s)
     order by w.not_before nulls first, w.id
     limit $2
     for update of w skip locked
   )
   update webhooks w set lease_owner = $1, lease_until = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
   from candidates c where w.id = c.id
   returning w.id`,
);

/**
 * Leases up to `limit` enabled endpoints that have events past their cursor, are not in
 * backoff and that no instance holds (or whose lease ran out).
 */
export async function claimWebhooks(db: Queryable, instanceId: string, limit: number, leaseMs: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>({ ...CLAIM_WEBHOOKS, values: [instanceId, limit, leaseMs] });
  return rows.map((r) => r.id);
}

/** Extends the lease and reads the endpoint; undefined when the lease is lost or the endpoint was disabled or deleted. */
export async function renewLease(db: Queryable, id: string, instanceId: string, leaseMs: number): Promise<HeldWebhook | undefined> {
  const { rows } = await db.query<HeldWebhook>(
    `update webhooks set lease_until = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
     where id = $1 and lease_owner = $2 and enabled
     returning id, url, secret, event_types as "eventTypes", accounts, cursor`,
    [id, instanceId, leaseMs],
  );
  return rows[0];
}

export async function releaseLease(db: Queryable, id: string, instanceId: string): Promise<void> {
  await db.query('update webhooks set lease_owner = null, lease_until = null where id = $1 and lease_owner = $2', [id, instanceId]);
}

/** Prepared (named): run at every batch of a held endpoint. */
const FIND_NEXT_EVENTS = namedStatement(
  'webhooks_find_next_events',
  `with scan as (
     select id, type, at, data, account_id, device_id as "deviceId", ${STORED_ACTUATION_COLUMNS} from events_after($1, null, ${SCAN_WINDOW})
   ), next as (
     select * from scan
     where type = any($2::text[]) and ($3::text[] is null or account_id = any($3::text[]))
     order by id limit $5
   )
   -- The attempts by primary key, one probe per event: as a join, the generic plan (an empty
   -- table's statistics) read every delivery of the endpoint for each event.
   select (select max(id) from scan) as "scannedTo", (select count(*)::int from scan) as scanned, next.*,
          (select d.attempts from webhook_deliveries d where d.webhook_id = $4 and d.event_id = next.id) as "deliveryAttempts"
   from (select 1) one
   left join next on true
   order by next.id`,
);

/**
 * The next `limit` matching events after the cursor, in order, within the next SCAN_WINDOW
 * ids (`events_after`, migration 0019) (the first is the head; only it can have attempts: nothing after the head is ever
 * sent before it is settled). When none matches there, `scannedTo` is the last event looked
 * at (the cursor may move there: event ids only grow, so nothing can appear below it later);
 * `scanned`, how many ids were looked at (SCAN_WINDOW: there may be more past them).
 */
export async function findNextEvents(db: Queryable, webhook: HeldWebhook, limit: number): Promise<{ events: HeadEvent[]; scannedTo: number | null; scanned: number }> {
  const { rows } = await db.query<StoredEventColumns & { scannedTo: number | null; scanned: number; id: number | null; at: Date; deliveryAttempts: number | null }>({
    ...FIND_NEXT_EVENTS,
    values: [webhook.cursor, webhook.eventTypes, webhook.accounts, webhook.id, limit],
  });
  const events = rows.filter((r) => r.id !== null).map((r) => ({ id: r.id!, type: r.type, at: r.at, data: storedEventData(r), attempts: r.deliveryAttempts ?? 0 }));
  return { events, scannedTo: rows[0]?.scannedTo ?? null, scanned: rows[0]?.scanned ?? 0 };
}

export async function advanceCursor(db: Queryable, id: string, instanceId: string, to: number): Promise<boolean> {
  const { rowCount } = await db.query('update webhooks set cursor = greatest(cursor, $3) where id = $1 and lease_owner = $2', [id, instanceId, to]);
  return (rowCount ?? 0) > 0;
}

export interface AttemptOutcome {
  webhookId: string;
  event: { id: number; type: string };
  /** delivered: 2xx, the cursor moves on. pending: retried at `nextAttemptAt`. failed: given up (max age), the cursor moves on. */
  status: 'delivered' | 'pending' | 'failed';
  startedAt: Date;
  statusCode: number | null;
  error: string | null;
  nextAttemptAt: Date | null;
  /** A 410 Gone: the endpoint is disabled (`disabled_reason`), its cursor stays. */
  disable?: string;
}

/** Prepared (named): one per delivery, and its planning cost about as much as its execution. */
const RECORD_ATTEMPT = namedStatement(
  'webhooks_record_attempt',
  `with held as (
     update webhooks set
       cursor = case when $4 then greatest(cursor, $3) else cursor end,
       not_before = $9,
       enabled = case when $10::text is null then enabled else false end,
       disabled_reason = coalesce($10, disabled_reason),
       lease_owner = case when $4 then lease_owner else null end,
       lease_until = case when $4 then lease_until else null end
     -- set_config(…, true) lasts until this statement's own (implicit) transaction commits:
     -- one round trip instead of begin, set local, the statement and commit.
     where id = $1 and lease_owner = $2 and enabled and set_config('synchronous_commit', 'off', true) = 'off'
     returning id
   )
   insert into webhook_deliveries as d (webhook_id, event_id, event_type, status, attempts, first_attempt_at, last_attempt_at, next_attempt_at, last_status_code, last_error)
   select held.id, $3, $5, $6, 1, $11, now(), $9, $7, $8 from held
   on conflict (webhook_id, event_id) do update set
     status = excluded.status, attempts = d.attempts + 1, last_attempt_at = excluded.last_attempt_at,
     next_attempt_at = excluded.next_attempt_at, last_status_code = excluded.last_status_code, last_error = excluded.last_error`,
);

/**
 * Records one attempt and moves the endpoint on, in one statement (so atomically):
 * the delivery row, and the endpoint's cursor, backoff and enabled flag. Nothing is
 * written when this instance no longer holds the lease, or the endpoint was disabled
 * meanwhile (a PATCH); returns whether it was.
 *
 * Committed with `synchronous_commit = off`: the commit does not wait for its WAL flush,
 * which would otherwise bound one endpoint to a few hundred deliveries a second. What
 * that risks is a PostgreSQL crash forgetting the last fraction of a second of outcomes:
 * the cursor is then a little behind and those events are sent again (duplicates, never
 * a loss; an instance crashing does not make PostgreSQL forget anything).
 */
export async function recordAttempt(db: Queryable, instanceId: string, o: AttemptOutcome): Promise<boolean> {
  const settled = o.status !== 'pending';
  const { rowCount } = await db.query({
    ...RECORD_ATTEMPT,
    values: [o.webhookId, instanceId, o.event.id, settled, o.event.type, o.status, o.statusCode, o.error, o.nextAttemptAt, o.disable ?? null, o.startedAt],
  });
  return (rowCount ?? 0) > 0;
}

export interface DeliveredOutcome {
  event: { id: number; type: string };
  startedAt: Date;
  statusCode: number;
}

/** Prepared (named): one per batch of 2xx outcomes (outcome-recorder.ts). */
const RECORD_DELIVERIES = namedStatement(
  'webhooks_record_deliveries',
  `with held as (
     update webhooks set cursor = greatest(cursor, (select max(e) from unnest($3::bigint[]) e))
     -- As in RECORD_ATTEMPT: committed without waiting for the WAL flush, this statement only.
     where id = $1 and lease_owner = $2 and enabled and set_config('synchronous_commit', 'off', true) = 'off'
     returning id
   )
   insert into webhook_deliveries as d (webhook_id, event_id, event_type, status, attempts, first_attempt_at, last_attempt_at, next_attempt_at, last_status_code, last_error)
   select held.id, o.event_id, o.event_type, 'delivered', 1, o.started_at, now(), null, o.status_code, null
   from held cross join unnest($3::bigint[], $4::text[], $5::timestamptz[], $6::int[]) as o(event_id, event_type, started_at, status_code)
   on conflict (webhook_id, event_id) do update set
     status = excluded.status, attempts = d.attempts + 1, last_attempt_at = excluded.last_attempt_at,
     next_attempt_at = null, last_status_code = excluded.last_status_code, last_error = null`,
);

/**
 * Records 2xx outcomes of one endpoint (distinct events, at least one) and moves its
 * cursor to the highest of them, in one statement: what `recordAttempt` does for each,
 * conditional on the lease in the same way. Returns whether it was written.
 */
export async function recordDeliveries(db: Queryable, instanceId: string, webhookId: string, outcomes: readonly DeliveredOutcome[]): Promise<boolean> {
  const { rowCount } = await db.query({
    ...RECORD_DELIVERIES,
    values: [webhookId, instanceId, outcomes.map((o) => o.event.id), outcomes.map((o) => o.event.type), outcomes.map((o) => o.startedAt), outcomes.map((o) => o.statusCode)],
  });
  return (rowCount ?? 0) > 0;
}

/** Matching events among the `cap` ids past the cursor of each endpoint (capped: a gauge, not an audit), for the backlog metric. */
export async function backlogs(db: Queryable, cap: number): Promise<{ id: string; enabled: boolean; backlog: number }[]> {
  const { rows } = await db.query<{ id: string; enabled: boolean; backlog: number }>(
    `select w.id, w.enabled, (
       select count(*)::int from (
         select 1 from events_after(w.cursor, null, $1) e
         where e.type = any(w.event_types) and (w.accounts is null or e.account_id = any(w.accounts))
       ) s
     ) as backlog
     from webhooks w order by w.id`,
    [cap],
  );
  return rows;
}

/** Settled deliveries older than `days` go, `batch` at a time; returns how many. */
export async function pruneDeliveries(db: Queryable, days: number, batch: number): Promise<number> {
  const { rowCount } = await db.query(
    `delete from webhook_deliveries where (webhook_id, event_id) in (
       select webhook_id, event_id from webhook_deliveries
       where status <> 'pending' and last_attempt_at < now() - make_interval(days => $1)
       limit $2
     )`,
    [days, batch],
  );
  return rowCount ?? 0;
}
