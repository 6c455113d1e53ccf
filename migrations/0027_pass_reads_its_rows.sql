-- The sequencing pass and the feed's window read planned once per connection, and a pass
-- that returns its events by reading their rows by position (issue 14: the feed's
-- PostgreSQL CPU per actuation).
--
-- 1. Generic plans. The statements of `sequence_events` and `events_after` take their
--    bounds from variables, so PL/pgSQL planned them again at every call (a custom plan
--    looked cheaper than the generic one, which does not know the bounds): about half of a pass's
--    CPU. Forced generic, each is planned once per connection; the plans are the ones the
--    custom planning chose (checked with EXPLAIN under force_generic_plan on a table of a
--    million events: every read of event_rows and event_batches by primary key, the gaps'
--    anti-join hashed). Backend CPU per call on PostgreSQL 15, synchronous_commit off,
--    median of 3 × 1,000 calls (bench/experiments/feed-pass-cpu.sh, fresh databases of up to
--    480,000 events): a pass with its read of 10 events 550 → 230 µs, of 70 events 840 →
--    610 µs (this includes part 2); on a scratch table of a million events, 790 → 290 and
--    940 → 340 µs, and `events_after` over 70 events 260 → 60 µs there (no difference on the
--    fresh databases, where PL/pgSQL had presumably chosen the generic plan itself).
--
-- 2. The pass reads its own rows. 0022's `sequence_and_read_events` called 0021's
--    `sequence_events`, then `events_after` over the ids it had given: the batch rows
--    found again, each run's rows range-scanned, every event copied through three result
--    sets (events_after's, the wrapper's sorted by id, the caller's): ~6 µs of PostgreSQL
--    time per event on the single-POST run (`npm run bench -- actuations --sse --db-stats`).
--    The pass already holds the positions it numbered in id order (`v_numbered`: the k-th
--    is id last_id + k, as the batches it inserts say); it now reads those rows itself,
--    one primary-key probe each, after writing the batch.
--
-- The pass below is 0021's `sequence_events` statement for statement (the same lock,
-- snapshot, pending positions and fences, batches and NOTIFY); `sequence_events` stays for
-- its other callers (tests, the webhooks bench). Same result as 0022: one row per event,
-- in id order, each with the pass's figures; one row of figures with null event columns
-- when the pass numbered nothing or p_read is false; no row when another instance holds
-- the lock. The events reach the caller only with the statement's result, once its
-- transaction has committed.
create or replace function sequence_and_read_events(p_limit integer, p_read boolean)
returns table (sequenced integer, last_id bigint, max_lag_seconds double precision,
               id bigint, type text, at timestamptz, data jsonb, device_id text, account_id text,
               actuation_id uuid, seq bigint, actuation_account_id text, previous_status text, attempts integer,
               status_code integer, reason_phrase text, source jsonb, session_id bigint, instance_id text, superseded_by uuid)
language plpgsql
-- As sequence_events: always by primary key, and no JIT.
set enable_seqscan = off
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
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
  v_lag double precision;
begin
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'sequence_and_read_events must run in a transaction of its own (its fence is the xid it takes after looking)';
  end if;
  if not pg_try_advisory_xact_lock(7340032012) then
    return;
  end if;
  select * into s from event_sequencer;
  if cardinality(s.pending) = 0 and not exists (select 1 from event_rows r where r.pos > s.high_pos) then
    v_count := 0;
  else
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
      v_fence := pg_current_xact_id();
      select array_agg(g.g order by g.g) into v_gaps
        from generate_series(s.high_pos + 1, v_new_high) g left join unnest(v_fresh) f(pos) on f.pos = g.g
       where f.pos is null;
    end if;
    v_numbered := case when v_seen is null then v_fresh
                       else (select array_agg(x order by x) from unnest(coalesce(v_fresh, '{}') || v_seen) x) end;
    v_count := coalesce(cardinality(v_numbered), 0);
    if v_count > 0 then
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
    v_lag := extract(epoch from clock_timestamp() - least(v_fresh_oldest, v_seen_oldest))::double precision;
  end if;
  if not p_read or v_count = 0 then
    return query select v_count, s.last_id + v_count, v_lag,
      null::bigint, null::text, null::timestamptz, null::jsonb, null::text, null::text, null::uuid, null::bigint, null::text,
      null::text, null::integer, null::integer, null::text, null::jsonb, null::bigint, null::text, null::uuid;
    return;
  end if;
  -- The k-th position numbered is id last_id + k (the batches above say the same).
  return query
  select v_count, s.last_id + v_count, v_lag,
         s.last_id + u.k, r.type, r.at, r.data, r.device_id, r.account_id, r.actuation_id, r.seq, r.actuation_account_id,
         r.previous_status, r.attempts, r.status_code, r.reason_phrase, r.source, r.session_id, r.instance_id, r.superseded_by
    from unnest(v_numbered) with ordinality u(p, k)
    join event_rows r on r.pos = u.p
   order by u.k;
end;
$$;

alter function sequence_events(integer) set plan_cache_mode = force_generic_plan;
alter function events_after(bigint, bigint, integer) set plan_cache_mode = force_generic_plan;
