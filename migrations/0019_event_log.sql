-- The change feed written once per event (replaces 0012's outbox + copy into 0011's `events`).
--
-- 0012 wrote every event three times: a trigger inserted an outbox row, the sequencer
-- deleted it and inserted it again into `events` (two indexes) with its id. Here a
-- trigger inserts the event once, into `event_rows`, under a write-order position `pos`;
-- the sequencer numbers the rows it can see with one row per pass in `event_batches`
-- (ids first_id … first_id + n − 1 are, in pos order, a run of consecutive positions or
-- the listed ones; a few runs when the pass skipped positions) and never rewrites an event. Readers unnest the batches after their cursor and join the rows by
-- pos; the view `events` (id, pos, type, at, data, device_id, account_id) shows that join.
--
-- Guarantees as before: ids only grow and have no gaps (each pass numbers after the last
-- id, under an advisory lock, committing batch and `last_id` together); an id is given
-- only once the event's transaction committed (the pass numbers rows it can see), so a
-- transaction that wrote first and commits last gets the later id, and a rolled-back one
-- none; the events of one actuation or session keep their order (a later transition's
-- transaction writes after the earlier one committed: larger pos, same or later pass).
--
-- What a pass numbers: the visible rows with pos above `high_pos` (every position up to
-- it is numbered or pending), and the pending positions that became visible. A position
-- below the highest one numbered that was not visible is kept pending (a list in the
-- sequencer's row) with a fence: the xid the pass takes after looking. Its drawer, if any, had an xid before it
-- drew the position (`event_pos()` below makes sure), the position was drawn before the
-- visible higher one was (a sequence without cache), so before the pass looked: that xid is
-- smaller than the fence. Once a snapshot's xmin is past the fence, the drawer has ended
-- (committed: visible in that snapshot; rolled back, or never used: not visible), so a
-- position still not visible in that same snapshot is dropped. An open transaction only
-- delays its own (pending) positions, never the feed.

create sequence event_pos_seq as bigint cache 1;  -- cache 1: values are drawn in increasing order, the fence relies on it

-- The xid first (a no-op in the triggers, whose statement already wrote), then the position.
create function event_pos() returns bigint
language sql volatile as $$
  select case when pg_current_xact_id() is not null then nextval('event_pos_seq') end
$$;

create table event_rows (
  pos         bigint primary key default event_pos(),
  type        text not null,
  at          timestamptz not null default now(),
  data        jsonb not null,
  device_id   text,
  account_id  text
);

-- A batch is ids first_id … first_id + n − 1. Most are a run of consecutive positions
-- (`first_pos` … first_pos + n − 1, `positions` null: read with one range scan of the
-- primary key); the others list them (`positions`, ascending; `first_pos` null: read by
-- one probe per event). A pass writes a run per stretch of consecutive positions it
-- numbers, up to 4, else one list.
create table event_batches (
  first_id    bigint primary key,
  n           integer not null check (n > 0),
  first_pos   bigint,
  positions   bigint[],
  check ((first_pos is null) <> (positions is null)),
  check (positions is null or cardinality(positions) = n)
);

-- The sequencer's state (0012's one row) gains: every position up to `high_pos` is
-- numbered or pending; `pending` (ascending) are positions not yet visible, each with its
-- fence in `pending_fences`. Rewritten with the row at each pass that changes something:
-- one row, not a write per pending position.
alter table event_sequencer
  add column high_pos bigint not null default 0,
  add column pending bigint[] not null default '{}',
  add column pending_fences xid8[] not null default '{}';

-- Existing events keep their ids (pos = id: one run per stretch of consecutive ids); the
-- outbox's rows follow, unnumbered, in their order: the first pass numbers them.
insert into event_rows (pos, type, at, data, device_id, account_id)
select id, type, at, data, device_id, account_id from events;

insert into event_batches (first_id, n, first_pos)
select min(id), count(*), min(id)
  from (select id, id - row_number() over (order by id) as run from events) e
 group by run;

select setval('event_pos_seq', greatest((select last_id from event_sequencer), (select coalesce(max(id), 0) from events), 1));
update event_sequencer set high_pos = (select last_value from event_pos_seq);

insert into event_rows (type, at, data, device_id, account_id)
select type, at, data, device_id, account_id from event_outbox order by pos;

drop table event_outbox;
drop table events;

-- The numbered events: what GET /v1/events and webhooks show. Readers that page use
-- `events_after` (bounded by the batches' primary key); this view is for everything else.
create view events as
select b.first_id + (r.pos - b.first_pos) as id, r.pos, r.type, r.at, r.data, r.device_id, r.account_id
  from event_batches b
  join event_rows r on r.pos between b.first_pos and b.first_pos + b.n - 1
 where b.positions is null
union all
select b.first_id + o.k - 1, r.pos, r.type, r.at, r.data, r.device_id, r.account_id
  from event_batches b
 cross join lateral unnest(b.positions) with ordinality o(pos, k)
  join event_rows r on r.pos = o.pos
 where b.positions is not null;

-- The events with ids in (p_after, least(p_after + p_window, p_up_to)], unordered: the
-- caller filters and orders. Only batches that can hold such ids are read (the one
-- holding p_after + 1 and those starting up to the window's end), a run by one range
-- scan, a list by a probe per event. A function of its own (its plan cached per
-- connection): the window is read whole (at most p_window rows) and the caller's filters
-- apply to it. And no JIT: the range
-- joins' estimates (bounds unknown at planning) price a 1,000-row window past
-- jit_above_cost, and compiling costs 200-500 ms a query where JIT is available.
create function events_after(p_after bigint, p_up_to bigint, p_window integer)
returns table (id bigint, pos bigint, type text, at timestamptz, data jsonb, device_id text, account_id text)
language plpgsql stable set jit = off as $f$
begin
  return query with batches as materialized (
    select b.first_id, b.n, b.first_pos, b.positions
      from event_batches b
     where b.first_id >= coalesce((select max(x.first_id) from event_batches x where x.first_id <= p_after + 1), 0)
       and b.first_id <= least(p_after + p_window, p_up_to)
  )
  select b.first_id + (r.pos - b.first_pos), r.pos, r.type, r.at, r.data, r.device_id, r.account_id
    from batches b
   cross join lateral (
     select * from event_rows r
      where r.pos >= b.first_pos + greatest(p_after + 1 - b.first_id, 0)
        and r.pos <= b.first_pos + least(least(p_after + p_window, p_up_to) - b.first_id, b.n - 1)
      order by r.pos limit p_window
   ) r
   where b.positions is null
  union all
  select b.first_id + o.k - 1, r.pos, r.type, r.at, r.data, r.device_id, r.account_id
    from batches b
   cross join lateral unnest(b.positions) with ordinality o(pos, k)
    join event_rows r on r.pos = o.pos
   where b.positions is not null
     and b.first_id + o.k - 1 > p_after
     and b.first_id + o.k - 1 <= least(p_after + p_window, p_up_to);
end;
$f$;

-- The triggers of 0012/0017, writing the row once.
create or replace function actuations_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, data, device_id, account_id)
  select 'actuation.' || e.status, e.data, n.device_id, d.account_id
    from new_rows n
    left join devices d on d.device_id = n.device_id
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

create or replace function actuations_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, data, device_id, account_id)
  select 'actuation.' || n.status, actuation_event_data(n, o.status), n.device_id, d.account_id
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where n.status is distinct from o.status
   order by n.device_id, n.seq;
  return null;
end;
$$;

create or replace function sessions_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, data, device_id, account_id)
  select 'device.connected', session_event_data(n), n.device_id, d.account_id
    from new_rows n left join devices d on d.device_id = n.device_id
   order by n.id;
  return null;
end;
$$;

create or replace function sessions_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_rows (type, data, device_id, account_id)
  select 'device.disconnected', session_event_data(n), n.device_id, d.account_id
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where o.disconnected_at is null and n.disconnected_at is not null
   order by n.id;
  return null;
end;
$$;

create or replace function dss_stream_events() returns trigger
language plpgsql as $$
declare
  v_base jsonb := jsonb_build_object('streamId', new.id, 'name', new.name, 'instanceId', new.holder_instance_id);
begin
  if new.connected and not old.connected then
    insert into event_rows (type, data) values ('dss.stream.connected', v_base || jsonb_build_object('lastSeq', new.last_seq));
  elsif old.connected and not new.connected then
    insert into event_rows (type, data) values ('dss.stream.disconnected', v_base || jsonb_build_object('lastSeq', new.last_seq));
  end if;
  if new.errors > old.errors then
    insert into event_rows (type, data)
    values ('dss.stream.error', v_base || jsonb_build_object('errors', new.errors - old.errors, 'lastError', new.last_error, 'lastSeq', new.last_seq));
  end if;
  return null;
end;
$$;

-- One sequencing pass (same contract as 0012's): numbers up to about p_limit visible
-- rows after the last id, as one batch, and NOTIFYs `iotws_events` with the new last id.
-- Returns nothing when another instance holds the lock, else the number of events
-- numbered (0 when none), the last id and the oldest numbered event's age.
-- Must run in its own transaction: the fence is the xid it takes after looking.
drop function sequence_events(integer);
create function sequence_events(p_limit integer)
returns table (sequenced integer, last_id bigint, max_lag_seconds double precision)
language plpgsql
-- Always by primary key: a seq scan of event_rows would read the whole retention period.
-- And no JIT: disabling seq scans prices the one-row sequencer read at 1e10, past
-- jit_above_cost, so 0012's pass JIT-compiled every time (~40 ms of CPU per pass, more
-- than the rest of it; bench/experiments/event-write-once.sh, variant outbox_nojit).
set enable_seqscan = off
set jit = off
as $$
declare
  s event_sequencer;
  v_fresh bigint[];
  v_fresh_oldest timestamptz;
  v_seen bigint[];
  v_seen_oldest timestamptz;
  v_kept bigint[];
  v_kept_fences xid8[];
  v_gaps bigint[];
  v_numbered bigint[];
  v_new_high bigint;
  v_count integer;
  v_fence xid8;
begin
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'sequence_events must run in a transaction of its own (its fence is the xid it takes after looking)';
  end if;
  if not pg_try_advisory_xact_lock(7340032012) then
    return;
  end if;
  select * into s from event_sequencer;
  -- One statement, so one snapshot: what is visible, and which pending positions that
  -- snapshot proves will never be (fence below its xmin, still not visible): those are
  -- neither numbered nor kept.
  with fresh as materialized (
    select r.pos, r.at from event_rows r where r.pos > s.high_pos order by r.pos limit p_limit
  ), pend as materialized (
    select p.pos, p.fence, r.at, r.pos is not null as visible
      from unnest(s.pending, s.pending_fences) p(pos, fence) left join event_rows r on r.pos = p.pos
  ), snap as materialized (
    select pg_snapshot_xmin(pg_current_snapshot()) as xmin
  )
  select (select array_agg(f.pos order by f.pos) from fresh f), (select min(f.at) from fresh f),
         (select array_agg(p.pos order by p.pos) from pend p where p.visible), (select min(p.at) from pend p where p.visible),
         (select array_agg(p.pos order by p.pos) from pend p, snap where not p.visible and p.fence >= snap.xmin),
         (select array_agg(p.fence order by p.pos) from pend p, snap where not p.visible and p.fence >= snap.xmin)
    into v_fresh, v_fresh_oldest, v_seen, v_seen_oldest, v_kept, v_kept_fences;
  v_new_high := coalesce(v_fresh[cardinality(v_fresh)], s.high_pos);
  if v_new_high - s.high_pos > coalesce(cardinality(v_fresh), 0) then
    -- Positions passed over (in progress, rolled back, or never used): pending from now,
    -- fenced by an xid taken now (after looking; only then: an xid makes the commit flush WAL).
    v_fence := pg_current_xact_id();
    select array_agg(g.g order by g.g) into v_gaps
      from generate_series(s.high_pos + 1, v_new_high) g left join unnest(v_fresh) f(pos) on f.pos = g.g
     where f.pos is null;
  end if;
  v_numbered := case when v_seen is null then v_fresh
                     else (select array_agg(x order by x) from unnest(coalesce(v_fresh, '{}') || v_seen) x) end;
  v_count := coalesce(cardinality(v_numbered), 0);
  if v_count > 0 then
    -- Runs of consecutive positions (ids last_id + k for the k-th position), or one list.
    insert into event_batches (first_id, n, first_pos)
    select s.last_id + min(u.k), count(*), min(u.p)
      from unnest(v_numbered) with ordinality u(p, k)
     group by u.p - u.k
    having (select count(distinct v.p - v.k) from unnest(v_numbered) with ordinality v(p, k)) <= 4;
    if not found then
      insert into event_batches (first_id, n, positions) values (s.last_id + 1, v_count, v_numbered);
    end if;
    perform pg_notify('iotws_events', (s.last_id + v_count)::text);
  end if;
  if v_count > 0 or v_gaps is not null or coalesce(cardinality(v_kept), 0) <> cardinality(s.pending) then
    update event_sequencer set
      last_id = s.last_id + v_count,
      high_pos = v_new_high,
      pending = coalesce(v_kept, '{}') || coalesce(v_gaps, '{}'),
      pending_fences = coalesce(v_kept_fences, '{}') || array_fill(v_fence, array[coalesce(cardinality(v_gaps), 0)]);
  end if;
  return query select v_count, s.last_id + v_count,
    extract(epoch from clock_timestamp() - least(v_fresh_oldest, v_seen_oldest))::double precision;
end;
$$;

-- Retention: the oldest events before p_cutoff, up to p_limit, oldest ids first, stopping
-- at the first one not older (so what is kept is a contiguous range of ids). Whole batches
-- go with their rows; the batch holding the new oldest id is cut to start there. One pass
-- at a time (an advisory lock: another instance's pass meanwhile returns 0 and stops).
create function delete_events_before(p_cutoff timestamptz, p_limit integer)
returns integer
language plpgsql set jit = off as $$
declare
  v_oldest bigint;
  v_keep bigint;
  v_count integer;
begin
  if not pg_try_advisory_xact_lock(7340032013) then
    return 0;
  end if;
  select min(first_id) into v_oldest from event_batches;
  if v_oldest is null then
    return 0;
  end if;
  -- The first id kept: the first of the head not older than the cutoff, else one past the head.
  with head as (select e.id, e.at from events_after(v_oldest - 1, null, p_limit) e)
  select coalesce((select min(h.id) from head h where h.at >= p_cutoff), (select max(h.id) + 1 from head h))
    into v_keep;
  if v_keep is null or v_keep <= v_oldest then
    return 0;
  end if;
  delete from event_rows r using events_after(v_oldest - 1, v_keep - 1, p_limit) e where r.pos = e.pos;
  get diagnostics v_count = row_count;
  delete from event_batches b where b.first_id < v_keep and b.first_id + b.n <= v_keep;
  update event_batches b set
      first_id = v_keep,
      n = b.n - (v_keep - b.first_id),
      first_pos = b.first_pos + (v_keep - b.first_id),
      positions = b.positions[v_keep - b.first_id + 1 :]
   where b.first_id < v_keep;
  return v_count;
end;
$$;
