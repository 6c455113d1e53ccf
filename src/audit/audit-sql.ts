/** The `audit_log` table (migrations/0010_audit_and_revocations.sql). */
import type { Pool } from '../db/pool.js';

/** One mutating REST call, as recorded: never a body, a header or a secret. */
export interface AuditEntry {
  /** A UUIDv7 of `at`, made by the instance: id order is time order, and a retried batch writes nothing twice. */
  id: string;
  at: Date;
  actorKind: 'key' | 'bootstrap' | 'anonymous';
  /** The API key's id (`actorKind` 'key'). */
  keyId: string | null;
  /** The key's name, or the bootstrap administrator's user name. */
  actor: string | null;
  method: string;
  /** The route template (`/v1/devices/:deviceId/actuations`), or `unmatched`. */
  route: string;
  /** The ids the call named: its path parameters, the id it created, a bulk call's device ids. */
  targets: Record<string, unknown>;
  status: number;
  requestId: string;
  remoteAddress: string | null;
}

export type AuditRecord = AuditEntry;

/** One statement for a batch of entries (each array one column); an entry already written (a retry) is skipped. */
export async function insertAuditEntries(pool: Pool, entries: AuditEntry[]): Promise<void> {
  await pool.query(
    `insert into audit_log (id, at, actor_kind, key_id, actor, method, route, targets, status, request_id, remote_address)
     select * from unnest($11::uuid[], $1::timestamptz[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::int[], $9::text[], $10::text[])
     on conflict (id) do nothing`,
    [
      entries.map((e) => e.at),
      entries.map((e) => e.actorKind),
      entries.map((e) => e.keyId),
      entries.map((e) => e.actor),
      entries.map((e) => e.method),
      entries.map((e) => e.route),
      entries.map((e) => JSON.stringify(e.targets)),
      entries.map((e) => e.status),
      entries.map((e) => e.requestId),
      entries.map((e) => e.remoteAddress),
      entries.map((e) => e.id),
    ],
  );
}

interface Row {
  id: string;
  at: Date;
  actor_kind: AuditEntry['actorKind'];
  key_id: string | null;
  actor: string | null;
  method: string;
  route: string;
  targets: Record<string, unknown>;
  status: number;
  request_id: string;
  remote_address: string | null;
}

/**
 * Entries in id (time) order after the cursor `after`, optionally of one key and from `since`
 * on (`sinceId`: the smallest UUIDv7 of that time, where the primary key walk starts).
 */
export async function listAuditEntries(
  pool: Pool,
  query: { keyId: string | null; since: Date | null; sinceId: string | null; after: string | null; limit: number },
): Promise<AuditRecord[]> {
  const { rows } = await pool.query<Row>(
    `select id::text, at, actor_kind, key_id, actor, method, route, targets, status, request_id, remote_address
       from audit_log
      where ($1::uuid is null or key_id = $1)
        and ($2::timestamptz is null or at >= $2)
        and id >= coalesce($5::uuid, '00000000-0000-0000-0000-000000000000')
        and id > coalesce($3::uuid, '00000000-0000-0000-0000-000000000000')
      order by id
      limit $4`,
    [query.keyId, query.since, query.after, query.limit, query.sinceId],
  );
  return rows.map((r) => ({
    id: r.id,
    at: r.at,
    actorKind: r.actor_kind,
    keyId: r.key_id,
    actor: r.actor,
    method: r.method,
    route: r.route,
    targets: r.targets,
    status: r.status,
    requestId: r.request_id,
    remoteAddress: r.remote_address,
  }));
}
