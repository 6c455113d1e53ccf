-- Actuation events stored as columns, their JSON built when read (issue 14: the feed's
-- PostgreSQL CPU per actuation).
--
-- 0019's triggers built a 13-key jsonb per actuation event: most of what writing an event
-- cost (bench/experiments/event-write-once.sh: 97.3 µs per actuation with it, 81.9 with a
-- constant payload, 81.6 with no events), a row 2.5× the size of the same values as
-- columns (more WAL), and again on every read, jsonb's text output. Now an actuation
-- event is its values in typed columns and `data` is null; the readers that page
-- (events_after: GET /v1/events, webhooks) return the columns and the server builds
-- `data` from them (src/events/stored-event.ts), key for key what 0012's
-- `actuation_event_data` gave, in jsonb's key order, so the bytes sent are the same. The
-- view `events` builds it in SQL (`event_data` below) for everything else.
--
-- Session and DSS stream events (a few per connection) keep their jsonb `data`, and so
-- do the actuation events written before this migration: a row has `data`, or is an
-- actuation event built from its columns (`actuation_id` not null).
--
-- Columns are named after the `data` keys they hold; `status` is the type's suffix and
-- `deviceId` is `device_id`, so neither is stored twice. `actuation_account_id` is
-- data.accountId (the actuation's own field), not `account_id` (the registry's, for scoping).
alter table event_rows
  alter column data drop not null,
  add column actuation_id uuid,
  add column seq bigint,
  add column actuation_account_id text,
  add column previous_status text,
  add column attempts integer,
  add column status_code integer,
  add column reason_phrase text,
  add column source jsonb,
  add column session_id bigint,
  add column instance_id text,
  add column superseded_by uuid,
  -- Not validated against the rows already there (all have data); checked for new ones.
  add constraint event_rows_data_or_actuation check (data is not null or actuation_id is not null) not valid;

-- An event's `data`, for readers in SQL (the view). The server's builder
-- (src/events/stored-event.ts) must give the same: test/integration/events-feed.test.ts
-- compares the two.
create function event_data(r event_rows) returns jsonb
language sql immutable as $$
  select coalesce(r.data, jsonb_build_object(
    'id', r.actuation_id, 'deviceId', r.device_id, 'accountId', r.actuation_account_id, 'seq', r.seq,
    'status', substr(r.type, length('actuation.') + 1), 'previousStatus', r.previous_status, 'attempts', r.attempts,
    'statusCode', r.status_code, 'reasonPhrase', r.reason_phrase, 'source', r.source, 'sessionId', r.session_id,
    'instanceId', r.instance_id, 'supersededBy', r.superseded_by))
$$;

drop view events;
create view events as
select b.first_id + (r.pos - b.first_pos) as id, r.pos, r.type, r.at, event_data(r) as data, r.device_id, r.account_id
  from event_batches b
  join event_rows r on r.pos between b.first_pos and b.first_pos + b.n - 1
 where b.positions is null
union all
select b.first_id + o.k - 1, r.pos, r.type, r.at, event_data(r), r.device_id, r.account_id
  from event_batches b
 cross join lateral unnest(b.positions) with ordinality o(pos, k)
  join event_rows r on r.pos = o.pos
 where b.positions is not null;

-- As in 0019, returning the stored columns (`data` null for an actuation event written
-- from now on: the caller builds it).
drop function events_after(bigint, bigint, integer);
create function events_after(p_after bigint, p_up_to bigint, p_window integer)
returns table (id bigint, pos bigint, type text, at timestamptz, data jsonb, device_id text, account_id text,
               actuation_id uuid, seq bigint, actuation_account_id text, previous_status text, attempts integer,
               status_code integer, reason_phrase text, source jsonb, session_id bigint, instance_id text, superseded_by uuid)
language plpgsql stable set jit = off as $f$
begin
  return query with batches as materialized (
    select b.first_id, b.n, b.first_pos, b.positions
      from event_batches b
     where b.first_id >= coalesce((select max(x.first_id) from event_batches x where x.first_id <= p_after + 1), 0)
       and b.first_id <= least(p_after + p_window, p_up_to)
  )
  select b.first_id + (r.pos - b.first_pos), r.pos, r.type, r.at, r.data, r.device_id, r.account_id,
         r.actuation_id, r.seq, r.actuation_account_id, r.previous_status, r.attempts, r.status_code, r.reason_phrase,
         r.source, r.session_id, r.instance_id, r.superseded_by
    from batches b
   cross join lateral (
     select * from event_rows r
      where r.pos >= b.first_pos + greatest(p_after + 1 - b.first_id, 0)
        and r.pos <= b.first_pos + least(least(p_after + p_window, p_up_to) - b.first_id, b.n - 1)
      order by r.pos limit p_window
   ) r
   where b.positions is null
  union all
  select b.first_id + o.k - 1, r.pos, r.type, r.at, r.data, r.device_id, r.account_id,
         r.actuation_id, r.seq, r.actuation_account_id, r.previous_status, r.attempts, r.status_code, r.reason_phrase,
         r.source, r.session_id, r.instance_id, r.superseded_by
    from batches b
   cross join lateral unnest(b.positions) with ordinality o(pos, k)
    join event_rows r on r.pos = o.pos
   where b.positions is not null
     and b.first_id + o.k - 1 > p_after
     and b.first_id + o.k - 1 <= least(p_after + p_window, p_up_to);
end;
$f$;

-- The triggers of 0019, writing columns. The values are those of 0012's
-- `actuation_event_data`: a created actuation's `queued` event has attempts 0 and no
-- session (a direct send's row is already `sent`).
create or replace function actuations_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, device_id, account_id, actuation_id, seq, actuation_account_id, previous_status, attempts,
                          status_code, reason_phrase, source, session_id, instance_id, superseded_by)
  select 'actuation.' || e.status, n.device_id, d.account_id, n.id, n.seq, n.account_id, e.previous_status, e.attempts,
         n.status_code, n.reason_phrase, n.source, e.session_id, e.instance_id, n.superseded_by
    from new_rows n
    left join devices d on d.device_id = n.device_id
   cross join lateral (
     select 1 as k, 'queued' as status, null::text as previous_status, 0 as attempts, null::bigint as session_id, null::text as instance_id
     union all
     select 2, n.status, 'queued', n.attempts, n.last_session_id, n.last_instance_id where n.status <> 'queued'
   ) e
   order by n.device_id, n.seq, e.k;
  return null;
end;
$$;

create or replace function actuations_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, device_id, account_id, actuation_id, seq, actuation_account_id, previous_status, attempts,
                          status_code, reason_phrase, source, session_id, instance_id, superseded_by)
  select 'actuation.' || n.status, n.device_id, d.account_id, n.id, n.seq, n.account_id, o.status, n.attempts,
         n.status_code, n.reason_phrase, n.source, n.last_session_id, n.last_instance_id, n.superseded_by
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where n.status is distinct from o.status
   order by n.device_id, n.seq;
  return null;
end;
$$;
