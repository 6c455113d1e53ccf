/**
 * The device registry (`devices`, migrations/0008): reading, registering and patching
 * devices, every query limited to the caller's accounts (`account-scope.ts`). The gateway
 * writes the same rows when devices connect and disconnect (`gateway/sessions-sql.ts`).
 */
import { withTransaction, type Pool } from '../db/pool.js';
import type { SessionRow } from '../gateway/sessions-sql.js';
import { accountVisibleSql, type AccountScope } from './account-scope.js';
import { MAX_TAGS, type DevicePatchBody, type DevicePutBody, type Tags } from './schemas.js';

export interface DeviceRecord {
  deviceId: string;
  /** From the registration, or from the token the device last authenticated with (when it named one). */
  accountId: string | null;
  name: string | null;
  tags: Tags;
  /** Has a session open now (on any instance). */
  online: boolean;
  /** First `PUT`; null for a device only known from connecting. */
  registeredAt: Date | null;
  firstSeenAt: Date | null;
  /** When it last authenticated or disconnected (an open session's `lastSeenAt` is fresher). */
  lastSeenAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  /** Its newest session (the open one when online); null if it never connected. */
  lastSession: SessionRow | null;
}

/** A change of the account named by a device's tokens, from its session history. */
export interface AccountChange {
  accountId: string;
  /** The first session authenticated with a token of this account (after one of another). */
  sessionId: number;
  at: Date;
}

/** The most account changes a device's answer shows (newest first). */
export const MAX_ACCOUNT_CHANGES = 20;

const DEVICE_SELECT = `select d.device_id, d.account_id, d.name, d.tags, d.registered_at, d.first_seen_at, d.last_seen_at,
       d.created_at, d.updated_at,
       s.id as s_id, s.account_id as s_account_id, s.instance_id as s_instance_id, s.remote_address as s_remote_address,
       s.connected_at as s_connected_at, s.last_seen_at as s_last_seen_at, s.disconnected_at as s_disconnected_at,
       s.close_code as s_close_code, s.close_reason as s_close_reason
  from devices d
  left join lateral (select * from device_sessions s where s.device_id = d.device_id order by s.id desc limit 1) s on true`;

interface DeviceRow {
  device_id: string;
  account_id: string | null;
  name: string | null;
  tags: Tags;
  registered_at: Date | null;
  first_seen_at: Date | null;
  last_seen_at: Date | null;
  created_at: Date;
  updated_at: Date;
  s_id: number | null;
  s_account_id: string | null;
  s_instance_id: string | null;
  s_remote_address: string | null;
  s_connected_at: Date | null;
  s_last_seen_at: Date | null;
  s_disconnected_at: Date | null;
  s_close_code: number | null;
  s_close_reason: string | null;
}

function toRecord(row: DeviceRow): DeviceRecord {
  const lastSession: SessionRow | null =
    row.s_id === null
      ? null
      : {
          id: row.s_id,
          deviceId: row.device_id,
          accountId: row.s_account_id,
          instanceId: row.s_instance_id!,
          remoteAddress: row.s_remote_address,
          connectedAt: row.s_connected_at!,
          lastSeenAt: row.s_last_seen_at!,
          disconnectedAt: row.s_disconnected_at,
          closeCode: row.s_close_code,
          closeReason: row.s_close_reason,
        };
  return {
    deviceId: row.device_id,
    accountId: row.account_id,
    name: row.name,
    tags: row.tags,
    online: lastSession !== null && lastSession.disconnectedAt === null,
    registeredAt: row.registered_at,
    firstSeenAt: row.first_seen_at,
    lastSeenAt: row.last_seen_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastSession,
  };
}

export interface DeviceFilter {
  /** The device has every one of these tags (GIN index `devices_tags_idx`). */
  tags: readonly { key: string; value: string }[];
  accountId: string | null;
  online: boolean | null;
  /** Device ids after this one (the previous page's last). */
  after: string | null;
  limit: number;
}

/**
 * Devices in device id order, filtered in SQL: tags by containment (`tags @> {…}`, the GIN
 * index), account by `devices_account_idx`, online by the open-session index. Only the
 * conditions asked for are in the statement, so each one plans on its index.
 */
export async function listDevices(pool: Pool, filter: DeviceFilter, scope: AccountScope): Promise<DeviceRecord[]> {
  const params: unknown[] = [];
  const where: string[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (filter.after !== null) where.push(`d.device_id > ${param(filter.after)}`);
  if (filter.tags.length > 0) where.push(`d.tags @> ${param(JSON.stringify(Object.fromEntries(filter.tags.map((t) => [t.key, t.value]))))}::jsonb`);
  if (filter.accountId !== null) where.push(`d.account_id = ${param(filter.accountId)}`);
  if (filter.online !== null) {
    where.push(`${filter.online ? '' : 'not '}exists (select 1 from device_sessions o where o.device_id = d.device_id and o.disconnected_at is null)`);
  }
  if (scope !== null) where.push(accountVisibleSql('d.account_id', scope, params));
  const { rows } = await pool.query<DeviceRow>(
    `${DEVICE_SELECT}
      ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
      order by d.device_id limit ${param(filter.limit)}`,
    params,
  );
  return rows.map(toRecord);
}

/** A device visible to `scope`, or undefined (unknown and invisible alike). */
export async function getDevice(pool: Pool, deviceId: string, scope: AccountScope): Promise<DeviceRecord | undefined> {
  const params: unknown[] = [deviceId];
  const { rows } = await pool.query<DeviceRow>(`${DEVICE_SELECT} where d.device_id = $1 and ${accountVisibleSql('d.account_id', scope, params)}`, params);
  return rows[0] && toRecord(rows[0]);
}

/**
 * Changes of the account its tokens named, newest first (sessions without an account
 * changed nothing and are skipped). Bounded by retention, which deletes old sessions.
 */
export async function accountChanges(pool: Pool, deviceId: string): Promise<AccountChange[]> {
  const { rows } = await pool.query<AccountChange>(
    `select account_id as "accountId", id as "sessionId", connected_at as at from (
       select id, account_id, connected_at, lag(account_id) over (order by id) as previous
         from device_sessions where device_id = $1 and account_id is not null
     ) s
      where previous is distinct from account_id
      order by id desc limit $2`,
    [deviceId, MAX_ACCOUNT_CHANGES],
  );
  return rows;
}

/**
 * Creates or replaces a registration (name, account, tags; what is absent is cleared).
 * A device that exists but is not visible to `scope` is left as it is: `not_visible`.
 */
export async function putDevice(pool: Pool, deviceId: string, body: DevicePutBody, scope: AccountScope): Promise<'created' | 'replaced' | 'not_visible'> {
  const params: unknown[] = [deviceId, body.accountId ?? null, body.name ?? null, JSON.stringify(body.tags ?? {})];
  const { rows } = await pool.query<{ created: boolean }>(
    `insert into devices as d (device_id, account_id, name, tags, registered_at) values ($1, $2, $3, $4::jsonb, now())
     on conflict (device_id) do update
        set account_id = excluded.account_id, name = excluded.name, tags = excluded.tags,
            registered_at = coalesce(d.registered_at, now()), updated_at = now()
      where ${accountVisibleSql('d.account_id', scope, params)}
     returning (xmax = 0) as created`,
    params,
  );
  if (rows.length === 0) return 'not_visible';
  return rows[0]!.created ? 'created' : 'replaced';
}

/**
 * Applies a JSON merge patch to a visible device's registration, under its row lock.
 * `too_many_tags`: the merged tags would exceed MAX_TAGS (nothing is changed).
 */
export async function patchDevice(pool: Pool, deviceId: string, patch: DevicePatchBody, scope: AccountScope): Promise<'patched' | 'not_visible' | 'too_many_tags'> {
  return withTransaction(pool, async (client) => {
    const params: unknown[] = [deviceId];
    const { rows } = await client.query<{ tags: Tags }>(
      `select tags from devices d where d.device_id = $1 and ${accountVisibleSql('d.account_id', scope, params)} for update`,
      params,
    );
    if (rows.length === 0) return 'not_visible';
    // A Map, not an object: a tag key may be `__proto__`.
    const merged = new Map(patch.tags === null ? [] : Object.entries(rows[0]!.tags));
    for (const [key, value] of Object.entries(patch.tags ?? {})) {
      if (value === null) merged.delete(key);
      else merged.set(key, value);
    }
    if (merged.size > MAX_TAGS) return 'too_many_tags';
    const tags = Object.fromEntries(merged);
    await client.query(
      `update devices
          set name = case when $2 then $3 else name end,
              account_id = case when $4 then $5 else account_id end,
              tags = $6::jsonb, registered_at = coalesce(registered_at, now()), updated_at = now()
        where device_id = $1`,
      [deviceId, patch.name !== undefined, patch.name ?? null, patch.accountId !== undefined, patch.accountId ?? null, JSON.stringify(tags)],
    );
    return 'patched';
  });
}

/** Of `deviceIds`, those visible to `scope` (one index probe each): the account check of actuation submits. */
export async function visibleDeviceIds(pool: Pool, deviceIds: readonly string[], scope: AccountScope): Promise<Set<string>> {
  const params: unknown[] = [[...new Set(deviceIds)]];
  const { rows } = await pool.query<{ device_id: string }>(
    `select d.device_id from devices d where d.device_id = any ($1::text[]) and ${accountVisibleSql('d.account_id', scope, params)}`,
    params,
  );
  return new Set(rows.map((r) => r.device_id));
}
