/**
 * Statements on `webhooks` for the REST API, one function each. The secret arrives here
 * sealed (`secret-box.ts`) and is read by the sender (`delivery-sql.ts`) and the test
 * delivery only; no row type here carries it.
 *
 * `scope`: the accounts of a caller limited to accounts, or null for one that is not.
 * A limited caller sees and changes only webhooks whose accounts are all among its own.
 */
import type pg from 'pg';
import { withTransaction, type Pool } from '../db/pool.js';
import type { WebhookCreateBody, WebhookUpdateBody } from './schemas.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface WebhookRow {
  id: string;
  url: string;
  eventTypes: string[];
  enabled: boolean;
  accounts: string[] | null;
  cursor: number;
  disabledReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, url, event_types as "eventTypes", enabled, accounts, cursor, disabled_reason as "disabledReason",
  created_at as "createdAt", updated_at as "updatedAt"`;

/** `$n` is the caller's accounts (text[] or null). */
const inScope = (n: number) => `($${n}::text[] is null or (accounts is not null and accounts <@ $${n}::text[]))`;

/** A new webhook starts after the newest event: it receives what happens from now on. */
export async function insertWebhook(db: Queryable, id: string, body: WebhookCreateBody, accounts: readonly string[] | null): Promise<WebhookRow> {
  const { rows } = await db.query<WebhookRow>(
    `insert into webhooks (id, url, event_types, secret, enabled, accounts, cursor)
     values ($1, $2, $3, $4, $5, $6, (select last_id from event_sequencer))
     returning ${COLUMNS}`,
    [id, body.url, body.events, body.secret, body.enabled, accounts],
  );
  return rows[0]!;
}

export async function listWebhooks(db: Queryable, scope: readonly string[] | null): Promise<WebhookRow[]> {
  const { rows } = await db.query<WebhookRow>(`select ${COLUMNS} from webhooks where ${inScope(1)} order by created_at, id`, [scope]);
  return rows;
}

export async function getWebhook(db: Queryable, id: string, scope: readonly string[] | null): Promise<WebhookRow | undefined> {
  const { rows } = await db.query<WebhookRow>(`select ${COLUMNS} from webhooks where id = $1 and ${inScope(2)}`, [id, scope]);
  return rows[0];
}

/** Enabling clears a server-side disable (a 410) and any wait for a retry: the head event is tried at once. */
export async function updateWebhook(db: Queryable, id: string, body: WebhookUpdateBody, scope: readonly string[] | null): Promise<WebhookRow | undefined> {
  const { rows } = await db.query<WebhookRow>(
    `update webhooks set
       url = coalesce($2, url),
       event_types = coalesce($3, event_types),
       secret = coalesce($4, secret),
       enabled = coalesce($5, enabled),
       disabled_reason = case when $5 is true then null else disabled_reason end,
       not_before = case when $5 is true then null else not_before end,
       updated_at = now()
     where id = $1 and ${inScope(6)}
     returning ${COLUMNS}`,
    [id, body.url ?? null, body.events ?? null, body.secret ?? null, body.enabled ?? null, scope],
  );
  return rows[0];
}

/**
 * The endpoint, then its deliveries (no foreign key does it since migration 0021: its check
 * cost every delivery's record). Two statements, in this order: once the endpoint's row is
 * gone no sender can record another delivery (recordAttempt needs the row), and the second
 * statement's snapshot sees one a sender committed while the first waited for its lock.
 */
export async function deleteWebhook(pool: Pool, id: string, scope: readonly string[] | null): Promise<boolean> {
  return withTransaction(pool, async (client) => {
    const { rowCount } = await client.query(`delete from webhooks where id = $1 and ${inScope(2)}`, [id, scope]);
    if ((rowCount ?? 0) === 0) return false;
    await client.query('delete from webhook_deliveries where webhook_id = $1', [id]);
    return true;
  });
}

export interface DeliveryRow {
  eventId: number;
  eventType: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  firstAttemptAt: Date;
  lastAttemptAt: Date;
  nextAttemptAt: Date | null;
  lastStatusCode: number | null;
  lastError: string | null;
}

/** Newest event first; `before` is the previous page's last event id. */
export async function listDeliveries(
  db: Queryable,
  webhookId: string,
  options: { status?: string | undefined; limit: number; before?: number | undefined },
): Promise<DeliveryRow[]> {
  const { rows } = await db.query<DeliveryRow>(
    `select event_id as "eventId", event_type as "eventType", status, attempts, first_attempt_at as "firstAttemptAt",
       last_attempt_at as "lastAttemptAt", next_attempt_at as "nextAttemptAt", last_status_code as "lastStatusCode", last_error as "lastError"
     from webhook_deliveries
     where webhook_id = $1 and ($2::text is null or status = $2) and ($3::bigint is null or event_id < $3)
     order by event_id desc
     limit $4`,
    [webhookId, options.status ?? null, options.before ?? null, options.limit],
  );
  return rows;
}

/** The secret, for a test delivery from the REST API. */
export async function getWebhookSecret(db: Queryable, id: string): Promise<string | undefined> {
  const { rows } = await db.query<{ secret: string }>('select secret from webhooks where id = $1', [id]);
  return rows[0]?.secret;
}
