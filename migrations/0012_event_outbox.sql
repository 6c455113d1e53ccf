-- The change feed's outbox: every transition is recorded here by a trigger, in the
-- transaction that makes it (so a rolled-back transaction leaves nothing), and moved
-- into `events` (0011) by the sequencer once committed, which gives it its position.
--
-- Why two tables: a position assigned at write time is not commit order (T1 writes
-- first, T2 writes and commits, T1 commits later: a reader that saw T2's position would
-- skip T1's). The sequencer (`sequence_events` below, one at a time under an advisory
-- lock) moves only rows it can see, that is rows of committed transactions, and numbers
-- them after every position it handed out before; a transaction still in progress is
-- simply not visible yet and is numbered by a later pass. So every event's id is
-- greater than the id of every event that was visible before it, and readers that
-- read `id > N order by id` never miss one.
--
-- `pos` orders the rows of one transaction, and the transitions of one row across
-- transactions (the later transition's transaction can only write after the earlier
-- one committed: it updates the same row), so events of one actuation or one session
-- keep their order. Events of unrelated transactions that the same pass moves are
-- numbered in `pos` order: all of them were committed before any was visible.
create table event_outbox (
  pos         bigint generated always as identity primary key,
  type        text not null,
  at          timestamptz not null default now(),
  data        jsonb not null,
  device_id   text,
  account_id  text
) with (
  -- A queue: rows live for milliseconds. Vacuum it on every autovacuum round instead of
  -- after 20% of a (tiny) table, so dead rows do not pile up in front of the sequencer's scan.
  autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000
);

-- The last position handed out. One row; updated only by the sequencer, in the
-- transaction that inserts the events, so ids are gap-free and never reused (also when
-- retention has deleted every event: `max(events.id)` would then start again from 1).
create table event_sequencer (
  only_row  boolean primary key default true check (only_row),
  last_id   bigint not null
);
insert into event_sequencer (last_id) select coalesce(max(id), 0) from events;

-- No index of ours on `events`: every index costs each event on the hot path. Retention
-- walks the primary key from the oldest id (ids follow time), readers read forward from
-- a position by the primary key (filters are checked on the rows read), and 0011's index
-- serves `deviceId`.

-- Payloads. One place each, shared by every trigger that emits that kind of event.
create function actuation_event_data(a actuations, p_previous text) returns jsonb
language sql immutable as $$
  select jsonb_build_object(
    'id', a.id, 'deviceId', a.device_id, 'accountId', a.account_id, 'seq', a.seq, 'status', a.status,
    'previousStatus', p_previous, 'attempts', a.attempts, 'statusCode', a.status_code, 'reasonPhrase', a.reason_phrase,
    'source', a.source, 'sessionId', a.last_session_id, 'instanceId', a.last_instance_id, 'supersededBy', a.superseded_by)
$$;

create function session_event_data(s device_sessions) returns jsonb
language sql immutable as $$
  select jsonb_build_object(
    'deviceId', s.device_id, 'accountId', s.account_id, 'sessionId', s.id, 'instanceId', s.instance_id,
    'connectedAt', s.connected_at, 'disconnectedAt', s.disconnected_at, 'closeCode', s.close_code, 'closeReason', s.close_reason)
$$;

-- Statement-level triggers with transition tables: one insert-select per statement,
-- however many rows it changed (a claim of 200 actuations is one insert here). The
-- delivery functions turn hash joins off for their own plans; the join of the
-- transition tables needs one, hence the settings.

-- An actuation is created `queued`, or `sent` at once (direct send: history queued, sent).
create function actuations_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'actuation.' || e.status, e.data, n.device_id, n.account_id
    from new_rows n
   cross join lateral (
     select 1 as k, 'queued' as status,
            actuation_event_data(n, null) || jsonb_build_object('status', 'queued', 'attempts', 0, 'sessionId', null, 'instanceId', null) as data
     union all
     select 2, n.status, actuation_event_data(n, 'queued') where n.status <> 'queued'
   ) e
   order by n.device_id, n.seq, e.k;
  return null;
end;
$$;

create function actuations_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'actuation.' || n.status, actuation_event_data(n, o.status), n.device_id, n.account_id
    from new_rows n join old_rows o on o.id = n.id
   where n.status is distinct from o.status
   order by n.device_id, n.seq;
  return null;
end;
$$;

create trigger actuations_events_insert after insert on actuations
  referencing new table as new_rows for each statement execute function actuations_inserted_events();
create trigger actuations_events_update after update on actuations
  referencing old table as old_rows new table as new_rows for each statement execute function actuations_updated_events();

-- A session row is opened (device.connected) and closed once (device.disconnected);
-- the frequent `last_seen_at` updates match nothing here.
create function sessions_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.connected', session_event_data(n), n.device_id, n.account_id from new_rows n order by n.id;
  return null;
end;
$$;

create function sessions_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.disconnected', session_event_data(n), n.device_id, n.account_id
    from new_rows n join old_rows o on o.id = n.id
   where o.disconnected_at is null and n.disconnected_at is not null
   order by n.id;
  return null;
end;
$$;

create trigger device_sessions_events_insert after insert on device_sessions
  referencing new table as new_rows for each statement execute function sessions_inserted_events();
create trigger device_sessions_events_update after update on device_sessions
  referencing old table as old_rows new table as new_rows for each statement execute function sessions_updated_events();

-- DSS streams: the holder records `connected` as the socket opens and closes, and adds
-- to `errors` (frames skipped, processing failures) with each progress flush; each
-- change is an event, in the transaction that records it. Rare: row level.
create function dss_stream_events() returns trigger
language plpgsql as $$
declare
  v_base jsonb := jsonb_build_object('streamId', new.id, 'name', new.name, 'instanceId', new.holder_instance_id);
begin
  if new.connected and not old.connected then
    insert into event_outbox (type, data) values ('dss.stream.connected', v_base || jsonb_build_object('lastSeq', new.last_seq));
  elsif old.connected and not new.connected then
    insert into event_outbox (type, data) values ('dss.stream.disconnected', v_base || jsonb_build_object('lastSeq', new.last_seq));
  end if;
  if new.errors > old.errors then
    insert into event_outbox (type, data)
    values ('dss.stream.error', v_base || jsonb_build_object('errors', new.errors - old.errors, 'lastError', new.last_error, 'lastSeq', new.last_seq));
  end if;
  return null;
end;
$$;

create trigger dss_streams_events after update on dss_streams
  for each row when (old.connected is distinct from new.connected or new.errors > old.errors)
  execute function dss_stream_events();

-- One sequencing pass: moves up to p_limit committed outbox rows into `events`, numbered
-- after the last id handed out, and NOTIFYs `iotws_events` with the new last id. Returns
-- nothing when another instance holds the lock (it is sequencing), else the number of
-- events moved (0 when the outbox is empty), the last id and the oldest event's age.
create function sequence_events(p_limit integer)
returns table (sequenced integer, last_id bigint, max_lag_seconds double precision)
language plpgsql
-- Always the primary key's order: a seq scan would read every dead row of this queue table.
set enable_seqscan = off
as $$
declare
  v_base bigint;
  v_count integer;
  v_oldest timestamptz;
begin
  if not pg_try_advisory_xact_lock(7340032012) then
    return;
  end if;
  select s.last_id into v_base from event_sequencer s;
  with moved as (
    delete from event_outbox o
     where o.pos = any (array(select x.pos from event_outbox x order by x.pos limit p_limit))
    returning o.pos, o.type, o.at, o.data, o.device_id, o.account_id
  ), inserted as (
    insert into events (id, type, at, data, device_id, account_id)
    select v_base + row_number() over (order by m.pos), m.type, m.at, m.data, m.device_id, m.account_id
      from moved m
    returning events.at
  )
  select count(*)::integer, min(i.at) into v_count, v_oldest from inserted i;
  if v_count > 0 then
    update event_sequencer set last_id = v_base + v_count;
    perform pg_notify('iotws_events', (v_base + v_count)::text);
  end if;
  return query select v_count, v_base + v_count, extract(epoch from clock_timestamp() - v_oldest)::double precision;
end;
$$;
