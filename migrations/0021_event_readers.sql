-- The change feed's readers cheaper per call (issue 14: the readers' share of PostgreSQL's
-- CPU per actuation). The readers' statements are also prepared now (src/db/named-statement.ts).
--
-- 1. An empty sequencing pass (nothing new, nothing pending: most passes, each instance runs
--    one every EVENTS_SEQUENCER_INTERVAL_MS, 20 ms by default) returns after one probe of
--    event_rows' primary key instead of running the pass's statement with its CTEs and
--    array aggregates. Otherwise `sequence_events` is 0019's, unchanged.
-- 2. A webhook delivery's record without a foreign key check (below).

create or replace function sequence_events(p_limit integer)
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
  -- Nothing new and nothing pending (most passes, at one every EVENTS_SEQUENCER_INTERVAL_MS
  -- per instance): one index probe, not the pass's statement and its arrays.
  if cardinality(s.pending) = 0 and not exists (select 1 from event_rows r where r.pos > s.high_pos) then
    return query select 0, s.last_id, null::double precision;
    return;
  end if;
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

-- A webhook delivery's record (src/webhooks/delivery-sql.ts, recordAttempt: one per
-- delivered event) without the foreign key from webhook_deliveries to webhooks: its check
-- ran per inserted row (a trigger, a query and a row lock on the endpoint that statement
-- had just updated). Deleting an endpoint deletes its deliveries itself (deleteWebhook,
-- src/webhooks/webhooks-sql.ts), after the endpoint, in the same transaction; a delivery
-- is only ever recorded by a statement that updates its endpoint's row, so none can
-- appear without its endpoint.
alter table webhook_deliveries drop constraint webhook_deliveries_webhook_id_fkey;
