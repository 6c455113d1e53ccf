/**
 * The devices' last known state and the recent-event log (migration 0016): one
 * statement writes a whole batch of events, and the reads of the REST API.
 */
import type pg from 'pg';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** One event as it is recorded; `value` is JSON text (or null), `at` an ISO time or null (then: now). */
export interface RecordedEvent {
  streamId: string;
  seq: number;
  eventType: string;
  dsn: string;
  oemModel: string | null;
  propertyName: string | null;
  baseType: string | null;
  value: string | null;
  at: string | null;
}

/**
 * Writes a batch in one statement: every event to the log (`withLog`; a replayed one is
 * already there), and the newest datapoint per (dsn, property) and connectivity per dsn
 * to the state tables, where it replaces the stored row only if it is newer (a higher
 * seq of the same stream, or a later event time from another stream), so a replayed or
 * out-of-order older event never rewinds the state.
 */
export async function recordEvents(db: Queryable, events: RecordedEvent[], withLog: boolean): Promise<void> {
  const col = <K extends keyof RecordedEvent>(k: K) => events.map((e) => e[k]);
  await db.query(
    `with items as (
       select t.stream_id, t.seq, t.event_type, t.dsn, t.oem_model, t.property_name, t.base_type, t.value, coalesce(t.at, now()) as at
         from unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::timestamptz[])
           as t(stream_id, seq, event_type, dsn, oem_model, property_name, base_type, value, at)
     ), logged as (
       insert into dss_event_log (stream_id, seq, event_type, dsn, oem_model, property_name, base_type, value, at)
       select stream_id, seq, event_type, dsn, oem_model, property_name, base_type, value, at from items where $10
       on conflict (stream_id, seq) do nothing
     ), datapoints as (
       select distinct on (dsn, property_name) * from items
        where event_type in ('datapoint', 'datapointack')
        order by dsn, property_name, seq desc, at desc
     ), state as (
       insert into dss_device_state as s (dsn, property_name, stream_id, seq, oem_model, base_type, value, updated_at)
       select dsn, property_name, stream_id, seq, oem_model, base_type, value, at from datapoints
       on conflict (dsn, property_name) do update set
         stream_id = excluded.stream_id, seq = excluded.seq, oem_model = excluded.oem_model,
         base_type = excluded.base_type, value = excluded.value, updated_at = excluded.updated_at
       where (excluded.stream_id = s.stream_id and excluded.seq > s.seq)
          or (excluded.stream_id <> s.stream_id and excluded.updated_at > s.updated_at)
     ), connections as (
       select distinct on (dsn) * from items where event_type = 'connectivity' order by dsn, seq desc, at desc
     ), connectivity as (
       insert into dss_device_connectivity as c (dsn, stream_id, seq, oem_model, status, updated_at)
       select dsn, stream_id, seq, oem_model, value #>> '{}', at from connections
       on conflict (dsn) do update set
         stream_id = excluded.stream_id, seq = excluded.seq, oem_model = excluded.oem_model,
         status = excluded.status, updated_at = excluded.updated_at
       where (excluded.stream_id = c.stream_id and excluded.seq > c.seq)
          or (excluded.stream_id <> c.stream_id and excluded.updated_at > c.updated_at)
     )
     select 1`,
    [
      col('streamId'),
      col('seq'),
      col('eventType'),
      col('dsn'),
      col('oemModel'),
      col('propertyName'),
      col('baseType'),
      col('value'),
      col('at'),
      withLog,
    ],
  );
}

export interface PropertyState {
  name: string;
  value: unknown;
  baseType: string | null;
  updatedAt: Date;
  seq: number;
  streamId: string;
}

export interface DeviceState {
  dsn: string;
  oemModel: string | null;
  connectivity: { status: string; updatedAt: Date; seq: number; streamId: string } | null;
  properties: PropertyState[];
}

/** Bounded by the number of a device's properties (DSS devices have tens). */
export async function getDeviceState(db: Queryable, dsn: string): Promise<DeviceState | undefined> {
  const [props, conn] = await Promise.all([
    db.query<PropertyState & { oemModel: string | null }>(
      `select property_name as name, value, base_type as "baseType", updated_at as "updatedAt", seq::float8 as seq, stream_id as "streamId", oem_model as "oemModel"
         from dss_device_state where dsn = $1 order by property_name limit 1000`,
      [dsn],
    ),
    db.query<{ status: string; updatedAt: Date; seq: number; streamId: string; oemModel: string | null }>(
      `select status, updated_at as "updatedAt", seq::float8 as seq, stream_id as "streamId", oem_model as "oemModel" from dss_device_connectivity where dsn = $1`,
      [dsn],
    ),
  ]);
  if (props.rows.length === 0 && conn.rows.length === 0) return undefined;
  const c = conn.rows[0];
  return {
    dsn,
    oemModel: c?.oemModel ?? props.rows[0]?.oemModel ?? null,
    connectivity: c ? { status: c.status, updatedAt: c.updatedAt, seq: c.seq, streamId: c.streamId } : null,
    properties: props.rows.map(({ oemModel: _oem, ...p }) => p),
  };
}

export interface LoggedEvent {
  seq: number;
  eventType: string;
  dsn: string;
  oemModel: string | null;
  propertyName: string | null;
  baseType: string | null;
  value: unknown;
  at: Date;
  receivedAt: Date;
}

/** Newest first; `before` is the cursor (the last seq of the previous page). */
export async function listLoggedEvents(
  db: Queryable,
  streamId: string,
  filter: { dsn?: string | undefined; propertyName?: string | undefined; before?: number | undefined; limit: number },
): Promise<LoggedEvent[]> {
  const { rows } = await db.query<LoggedEvent>(
    `select seq::float8 as seq, event_type as "eventType", dsn, oem_model as "oemModel", property_name as "propertyName",
            base_type as "baseType", value, at, received_at as "receivedAt"
       from dss_event_log
      where stream_id = $1 and ($2::text is null or dsn = $2) and ($3::text is null or property_name = $3)
        and ($4::bigint is null or seq < $4)
      order by seq desc limit $5`,
    [streamId, filter.dsn ?? null, filter.propertyName ?? null, filter.before ?? null, filter.limit],
  );
  return rows;
}
