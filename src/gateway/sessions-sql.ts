/** SQL for `device_sessions` and `instances`, one function per statement. */
import type { Pool, PoolClient } from '../db/pool.js';
import { deviceVisibleSql, type AccountScope } from '../devices/account-scope.js';

type Queryable = Pool | PoolClient;

export interface SessionRow {
  id: number;
  deviceId: string;
  accountId: string | null;
  instanceId: string;
  remoteAddress: string | null;
  connectedAt: Date;
  lastSeenAt: Date;
  disconnectedAt: Date | null;
  closeCode: number | null;
  closeReason: string | null;
}

const SESSION_COLUMNS = `id, device_id as "deviceId", account_id as "accountId", instance_id as "instanceId",
  remote_address as "remoteAddress", connected_at as "connectedAt", last_seen_at as "lastSeenAt",
  disconnected_at as "disconnectedAt", close_code as "closeCode", close_reason as "closeReason"`;

export const SESSION_REPLACED_CHANNEL = 'device_session_replaced';

export interface OpenedSession {
  sessionId: number;
  /** The session this one took over (on any instance), if the device had one open. */
  replaced: { sessionId: number; instanceId: string } | null;
  /**
   * Whether the device had actuations queued, or sent and not acked, at the statement's
   * snapshot (PENDING_AT_OPEN): without, the dispatcher skips its backlog claim.
   */
  hadPending: boolean;
}

/** Read through the partial indexes of queued and of sent rows: two index probes per device. */
const PENDING_AT_OPEN = (deviceId: string) =>
  `(exists (select 1 from actuations a where a.device_id = ${deviceId} and a.status = 'queued')
     or exists (select 1 from actuations a where a.device_id = ${deviceId} and a.status = 'sent'))`;

/**
 * The registry row of a device that authenticated (`devices`, migrations/0008), written
 * by the statement that opens its session (no statement more per connect): first and last
 * seen, and the account of its token when the token names one (a token without one keeps
 * the registered account). A change of account is in the session rows too
 * (`device_sessions.account_id`), which the device's answer lists as `accountChanges`.
 */
const REGISTER_SEEN = `insert into devices as d (device_id, account_id, first_seen_at, last_seen_at)`;
const ON_SEEN = `on conflict (device_id) do update
          set account_id = coalesce(excluded.account_id, d.account_id),
              first_seen_at = coalesce(d.first_seen_at, excluded.first_seen_at),
              last_seen_at = excluded.last_seen_at,
              updated_at = case when excluded.account_id is distinct from d.account_id and excluded.account_id is not null
                                then now() else d.updated_at end`;

/**
 * The change feed's device.connected and device.disconnected rows, written by the statement
 * that opens or closes the sessions (migrations/0023: no trigger). A CTE `opened` or `closed`
 * returns `id, device_id, s as session` (the row as the statement left it).
 */
const INSERT_EVENTS = `insert into event_rows (type, data, device_id, account_id)`;

/**
 * The device.disconnected rows of the sessions a statement closed (CTE `closed`), filed
 * under the registry's account of the device (which a close does not change).
 */
const DISCONNECTED_EVENTS = `${INSERT_EVENTS}
       select 'device.disconnected', session_event_data(c.session), c.device_id, (select d.account_id from devices d where d.device_id = c.device_id)
         from closed c order by c.id`;

/**
 * The events of a session statement: the takeovers' device.disconnected (CTE `previous`)
 * before the device.connected of the sessions it opened (CTE `opened`), filed under the
 * registry's account as the statement leaves it (CTE `registered`: a statement does not
 * see its own upsert in `devices`).
 */
const SESSION_EVENTS = `${INSERT_EVENTS}
       select e.type, session_event_data(e.session), e.device_id, r.account_id
         from (select 1 as k, 'device.disconnected' as type, p.id, p.device_id, p.session from previous p
               union all
               select 2, 'device.connected', o.id, o.device_id, o.session from opened o) e
         left join registered r on r.device_id = e.device_id
        order by e.k, e.id`;

/** `last_seen_at` of the devices whose sessions a statement closed (CTE `closed` returning device_id, last_seen_at). */
const SEEN_AT_CLOSE = `update devices d set last_seen_at = greatest(d.last_seen_at, c.last_seen_at)
       from (select device_id, max(last_seen_at) as last_seen_at from closed group by device_id) c
      where d.device_id = c.device_id`;

/**
 * Opens a session, closing the device's previous open session (wherever it is) in
 * the same statement so that the one-open-session index holds, and records the device
 * in the registry (REGISTER_SEEN).
 */
export async function openSession(
  db: Queryable,
  s: { deviceId: string; accountId: string | null; instanceId: string; remoteAddress: string | null },
): Promise<OpenedSession> {
  const { rows } = await db.query<{ sessionId: number; replacedId: number | null; replacedInstance: string | null; hadPending: boolean }>(
    `with previous as (
       update device_sessions s set disconnected_at = now(), close_code = 1000, close_reason = 'session replaced'
        where s.device_id = $1 and s.disconnected_at is null
       returning s.id, s.device_id, s.instance_id, s as session
     ), opened as (
       insert into device_sessions as s (device_id, account_id, instance_id, remote_address)
       select $1, $2, $3, $4 from (select count(*) from previous) as wait_for_previous
       returning s.id, s.device_id, s as session
     ), registered as (
       ${REGISTER_SEEN}
       values ($1, $2, now(), now())
       ${ON_SEEN}
       returning d.device_id, d.account_id
     ), feed as (
       ${SESSION_EVENTS}
     )
     select opened.id as "sessionId", previous.id as "replacedId", previous.instance_id as "replacedInstance",
            ${PENDING_AT_OPEN('$1')} as "hadPending"
       from opened left join previous on true`,
    [s.deviceId, s.accountId, s.instanceId, s.remoteAddress],
  );
  const row = rows[0]!;
  return {
    sessionId: row.sessionId,
    replaced: row.replacedId === null ? null : { sessionId: row.replacedId, instanceId: row.replacedInstance! },
    hadPending: row.hadPending,
  };
}

/**
 * `openSession` for many devices in one statement and one commit (group commit for
 * devices connecting at the same moment). The device ids must be distinct; results
 * come back in input order.
 */
export async function openSessions(
  db: Queryable,
  instanceId: string,
  items: { deviceId: string; accountId: string | null; remoteAddress: string | null }[],
): Promise<OpenedSession[]> {
  const { rows } = await db.query<{ sessionId: number; deviceId: string; replacedId: number | null; replacedInstance: string | null; hadPending: boolean }>(
    // `device_id = any(...)`, not a join with the input: the one-open-session index is
    // used per device even when the statistics are stale (a join planned on them scanned
    // every open session, once per batch).
    `with previous as (
       update device_sessions s set disconnected_at = now(), close_code = 1000, close_reason = 'session replaced'
        where s.device_id = any($1::text[]) and s.disconnected_at is null
       returning s.id, s.device_id, s.instance_id, s as session
     ), opened as (
       insert into device_sessions as s (device_id, account_id, instance_id, remote_address)
       select i.device_id, i.account_id, $4, i.remote_address
         from unnest($1::text[], $2::text[], $3::text[]) with ordinality as i(device_id, account_id, remote_address, ord),
              (select count(*) from previous) as wait_for_previous
        order by i.ord
       returning s.id, s.device_id, s as session
     ), registered as (
       -- In device order, so that two instances registering overlapping devices lock them in one order.
       ${REGISTER_SEEN}
       select i.device_id, i.account_id, now(), now() from unnest($1::text[], $2::text[]) as i(device_id, account_id) order by i.device_id
       ${ON_SEEN}
       returning d.device_id, d.account_id
     ), feed as (
       ${SESSION_EVENTS}
     )
     select opened.id as "sessionId", opened.device_id as "deviceId", previous.id as "replacedId", previous.instance_id as "replacedInstance",
            ${PENDING_AT_OPEN('opened.device_id')} as "hadPending"
       from opened left join previous on previous.device_id = opened.device_id`,
    [items.map((i) => i.deviceId), items.map((i) => i.accountId), items.map((i) => i.remoteAddress), instanceId],
  );
  const byDevice = new Map(rows.map((row) => [row.deviceId, row]));
  return items.map((item) => {
    const row = byDevice.get(item.deviceId);
    if (!row) throw new Error(`openSessions: no row for device ${item.deviceId}`);
    return {
      sessionId: row.sessionId,
      replaced: row.replacedId === null ? null : { sessionId: row.replacedId, instanceId: row.replacedInstance! },
      hadPending: row.hadPending,
    };
  });
}

/** Tells the instance holding a replaced session to close its socket. */
export async function notifySessionReplaced(db: Queryable, replaced: { deviceId: string; sessionId: number; instanceId: string }): Promise<void> {
  await db.query('select pg_notify($1, $2)', [SESSION_REPLACED_CHANNEL, JSON.stringify(replaced)]);
}

/**
 * Idempotent: a row already closed (by a retry, a takeover or another instance) is left as it is.
 * The device is in the WHERE beside the session id (the primary key finds the row either way) so
 * that the statement names its shard once `device_sessions` is distributed by device (docs/scaling.md).
 */
export async function closeSession(
  db: Queryable,
  session: { deviceId: string; sessionId: number },
  code: number,
  reason: string,
  lastSeenAt: Date,
  disconnectedAt?: Date,
): Promise<void> {
  await db.query(
    `with closed as (
       update device_sessions s
          set disconnected_at = coalesce($5, now()), close_code = $2, close_reason = $3, last_seen_at = greatest(s.last_seen_at, $4)
        where s.id = $1 and s.device_id = $6 and s.disconnected_at is null
       returning s.id, s.device_id, s.last_seen_at, s as session
     ), feed as (
       ${DISCONNECTED_EVENTS}
     )
     ${SEEN_AT_CLOSE}`,
    [session.sessionId, code, reason, lastSeenAt, disconnectedAt ?? null, session.deviceId],
  );
}

/**
 * One statement for all sockets: keeps `last_seen_at` fresh without a write per message.
 * Keyed by device and session (see closeSession): each row names its shard.
 */
export async function touchSessions(db: Queryable, deviceIds: string[], sessionIds: number[], lastSeen: Date[]): Promise<void> {
  if (sessionIds.length === 0) return;
  await db.query(
    `update device_sessions s set last_seen_at = greatest(s.last_seen_at, v.seen)
       from unnest($1::text[], $2::bigint[], $3::timestamptz[]) as v(device_id, id, seen)
      where s.id = v.id and s.device_id = v.device_id and s.disconnected_at is null`,
    [deviceIds, sessionIds, lastSeen],
  );
}

export async function registerInstance(db: Queryable, instanceId: string, heartbeatIntervalMs: number): Promise<void> {
  await db.query(
    `insert into instances (id, heartbeat_interval_ms) values ($1, $2)
     on conflict (id) do update set started_at = now(), last_heartbeat_at = now(), heartbeat_interval_ms = $2`,
    [instanceId, heartbeatIntervalMs],
  );
}

/**
 * Records a beat. `wasPresumedDead`: the beat before was three intervals old or the row was gone,
 * so other instances may have closed this instance's sessions meanwhile.
 */
export async function heartbeatInstance(db: Queryable, instanceId: string, heartbeatIntervalMs: number): Promise<{ wasPresumedDead: boolean }> {
  const { rows } = await db.query<{ wasPresumedDead: boolean }>(
    `with previous as (select last_heartbeat_at from instances where id = $1)
     insert into instances (id, heartbeat_interval_ms) values ($1, $2)
     on conflict (id) do update set last_heartbeat_at = now(), heartbeat_interval_ms = $2
     returning coalesce((select last_heartbeat_at <= now() - 3 * $2 * interval '1 millisecond' from previous), true) as "wasPresumedDead"`,
    [instanceId, heartbeatIntervalMs],
  );
  return rows[0]!;
}

/** Readiness: a write that commits, without moving the heartbeat (whose gaps the liveness reads). */
export async function touchInstance(db: Queryable, instanceId: string): Promise<boolean> {
  const { rowCount } = await db.query('update instances set heartbeat_interval_ms = heartbeat_interval_ms where id = $1', [instanceId]);
  return (rowCount ?? 0) > 0;
}

/** Closes the sessions an earlier run of this instance id left open when it died. */
export async function closeOwnOrphanedSessions(db: Queryable, instanceId: string): Promise<number> {
  const { rows } = await db.query<{ closed: number }>(
    `with closed as (
       update device_sessions s set disconnected_at = s.last_seen_at, close_code = 1006, close_reason = 'instance restarted'
        where s.instance_id = $1 and s.disconnected_at is null
       returning s.id, s.device_id, s.last_seen_at, s as session
     ), seen as (
       ${SEEN_AT_CLOSE}
     ), feed as (
       ${DISCONNECTED_EVENTS}
     )
     select count(*)::integer as closed from closed`,
    [instanceId],
  );
  return rows[0]!.closed;
}

/**
 * Closes sessions held by instances that missed three of their own heartbeats (crashed or
 * partitioned), or that have no row at all; forgets instances dead for a day.
 */
export async function closeSessionsOfDeadInstances(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ closed: number }>(
    `with closed as (
       update device_sessions s set disconnected_at = s.last_seen_at, close_code = 1006, close_reason = 'instance lost'
        where s.disconnected_at is null
          and not exists (select 1 from instances i
                           where i.id = s.instance_id
                             and i.last_heartbeat_at > now() - 3 * i.heartbeat_interval_ms * interval '1 millisecond')
       returning s.id, s.device_id, s.last_seen_at, s as session
     ), seen as (
       ${SEEN_AT_CLOSE}
     ), feed as (
       ${DISCONNECTED_EVENTS}
     )
     select count(*)::integer as closed from closed`,
  );
  await db.query(`delete from instances where last_heartbeat_at < now() - interval '1 day'`);
  return rows[0]!.closed;
}

/** Instances within three of their own heartbeats (this one included): the divisor of per-instance shares (API key rate limits). */
export async function countLiveInstances(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ live: number }>(
    `select count(*)::int as live from instances where last_heartbeat_at > now() - 3 * heartbeat_interval_ms * interval '1 millisecond'`,
  );
  return rows[0]!.live;
}

export async function removeInstance(db: Queryable, instanceId: string): Promise<void> {
  await db.query('delete from instances where id = $1', [instanceId]);
}

/** A device's sessions, newest first; none for a device not visible to `scope` (as for one that never connected). */
export async function listSessions(db: Queryable, deviceId: string, limit: number, beforeId: number | null, scope: AccountScope): Promise<SessionRow[]> {
  const params: unknown[] = [deviceId, beforeId, limit];
  const { rows } = await db.query<SessionRow>(
    `select ${SESSION_COLUMNS} from device_sessions
      where device_id = $1 and ($2::bigint is null or id < $2) and ${deviceVisibleSql('$1', scope, params)}
      order by id desc limit $3`,
    params,
  );
  return rows;
}

/** The newest session id now: sessions this run opens all have larger ids. */
export async function latestSessionId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ id: number }>('select coalesce(max(id), 0)::bigint as id from device_sessions');
  return rows[0]!.id;
}

/**
 * Sessions of this instance, opened after `afterId`, that another instance closed as
 * `instance lost` (this one missed its heartbeats, e.g. cut off from the database).
 */
export async function sessionsClosedAsLost(db: Queryable, instanceId: string, afterId: number): Promise<{ sessionId: number; deviceId: string }[]> {
  const { rows } = await db.query<{ sessionId: number; deviceId: string }>(
    `select id as "sessionId", device_id as "deviceId" from device_sessions
      where id > $2 and instance_id = $1 and close_reason = 'instance lost'`,
    [instanceId, afterId],
  );
  return rows;
}
