/** Statements on `dss_streams`, one function each. The stream key is read only by the holder's client. */
import crypto from 'node:crypto';
import type pg from 'pg';
import type { StreamCreateBody, StreamUpdateBody } from './schemas.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface StreamRow {
  id: string;
  name: string;
  url: string;
  streamKey: string;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  lastSeq: number | null;
  holderInstanceId: string | null;
  connected: boolean;
  connectedAt: Date | null;
  lastEventAt: Date | null;
  events: number;
  heartbeats: number;
  errors: number;
  lastError: string | null;
}

const COLUMNS = `id, name, url, stream_key as "streamKey", enabled, created_at as "createdAt", updated_at as "updatedAt",
  last_seq as "lastSeq", holder_instance_id as "holderInstanceId", connected, connected_at as "connectedAt",
  last_event_at as "lastEventAt", events, heartbeats, errors, last_error as "lastError"`;

export async function insertStream(db: Queryable, body: StreamCreateBody): Promise<StreamRow> {
  const { rows } = await db.query<StreamRow>(
    `insert into dss_streams (id, name, url, stream_key, enabled) values ($1, $2, $3, $4, $5) returning ${COLUMNS}`,
    [crypto.randomUUID(), body.name, body.url, body.streamKey, body.enabled],
  );
  return rows[0]!;
}

export async function listStreams(db: Queryable): Promise<StreamRow[]> {
  const { rows } = await db.query<StreamRow>(`select ${COLUMNS} from dss_streams order by created_at, id`);
  return rows;
}

export async function getStream(db: Queryable, id: string): Promise<StreamRow | undefined> {
  const { rows } = await db.query<StreamRow>(`select ${COLUMNS} from dss_streams where id = $1`, [id]);
  return rows[0];
}

/**
 * A new URL or key is a new subscription as far as seq goes (DSS numbers events
 * per subscription), so the position is forgotten and the stream starts live.
 */
export async function updateStream(db: Queryable, id: string, body: StreamUpdateBody): Promise<StreamRow | undefined> {
  const { rows } = await db.query<StreamRow>(
    `update dss_streams set
       name = coalesce($2, name),
       url = coalesce($3, url),
       stream_key = coalesce($4, stream_key),
       enabled = coalesce($5, enabled),
       last_seq = case when ($3::text is not null and $3 <> url) or ($4::text is not null and $4 <> stream_key) then null else last_seq end,
       updated_at = now()
     where id = $1 returning ${COLUMNS}`,
    [id, body.name ?? null, body.url ?? null, body.streamKey ?? null, body.enabled ?? null],
  );
  return rows[0];
}

export async function deleteStream(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from dss_streams where id = $1', [id]);
  return rowCount === 1;
}

/** What the supervisor compares on each tick; `updatedAt` changing means: reconnect with the new settings. */
export async function listStreamsForSupervisor(db: Queryable): Promise<Pick<StreamRow, 'id' | 'name' | 'url' | 'streamKey' | 'enabled' | 'updatedAt' | 'lastSeq'>[]> {
  const { rows } = await db.query(
    `select id, name, url, stream_key as "streamKey", enabled, updated_at as "updatedAt", last_seq as "lastSeq" from dss_streams`,
  );
  return rows;
}

export async function markHeld(db: Queryable, id: string, instanceId: string): Promise<void> {
  await db.query('update dss_streams set holder_instance_id = $2, connected = false where id = $1', [id, instanceId]);
}

export async function markConnected(db: Queryable, id: string, instanceId: string, connected: boolean): Promise<void> {
  await db.query(
    `update dss_streams set connected = $3, connected_at = case when $3 then now() else connected_at end
     where id = $1 and holder_instance_id = $2`,
    [id, instanceId, connected],
  );
}

export async function markReleased(db: Queryable, id: string, instanceId: string): Promise<void> {
  await db.query('update dss_streams set holder_instance_id = null, connected = false where id = $1 and holder_instance_id = $2', [id, instanceId]);
}

export interface StreamProgress {
  lastSeq: number | null;
  events: number;
  heartbeats: number;
  errors: number;
  lastEventAt: Date | null;
  lastError: string | null;
}

/**
 * Adds counters and moves the position forward, never back (`greatest`): a
 * holder that lost its lock late cannot rewind the one that took over.
 * Returns false when the stream no longer exists.
 */
export async function recordProgress(db: Queryable, id: string, p: StreamProgress): Promise<boolean> {
  const { rowCount } = await db.query(
    `update dss_streams set
       last_seq = case when $2::bigint is null then last_seq else greatest(coalesce(last_seq, 0), $2) end,
       events = events + $3, heartbeats = heartbeats + $4, errors = errors + $5,
       last_event_at = greatest(last_event_at, $6), last_error = coalesce($7, last_error)
     where id = $1`,
    [id, p.lastSeq, p.events, p.heartbeats, p.errors, p.lastEventAt, p.lastError],
  );
  return rowCount === 1;
}
