-- Hot-path statements plan once per connection, not on every call.
--
-- PostgreSQL plans a statement with parameters anew on every call ("custom plans"):
-- the planner sees the batch's arrays as constants, and planning a 500-item batch
-- cost more than running it. pg_stat_statements in `npm run bench -- actuations
-- --db-stats` showed about 40% of PostgreSQL's time per actuation in planning.
-- The three statements of the delivery path (submit, claim, ack) are therefore
-- PL/pgSQL functions with `plan_cache_mode = force_generic_plan`: each statement
-- in them is planned once per connection.
--
-- A generic plan is made once, from the statistics of that moment (perhaps an empty
-- table), and then used while the table grows. So that no plan can turn into a scan
-- of a big table, these functions also turn off sequential scans, hash joins and
-- merge joins, and every lookup of one row by its primary key is fenced (`offset 0`)
-- with its other conditions checked outside the fence. Without the fences, plans made
-- on empty tables looked rows up by id through a partial index on status (a scan of
-- every queued row per lookup; the bench's bulk run stalled on it). Every statement
-- is driven from the batch's arrays through primary-key or per-device index lookups.
-- Checked with auto_explain on empty tables and on a table with 400,000 rows.
--
-- submit_actuations also:
-- - locks existing counter rows with a row lock instead of an upsert that wrote a new
--   row version per device per batch;
-- - sends directly: an item may carry `sessionId`, the open session on the calling
--   instance of a device that instance is ready to write to. If that session is still
--   open and the device has nothing queued, the actuation is inserted as `sent` to that
--   session (history: queued, then sent) and the caller writes it after the commit,
--   exactly as if it had been claimed. No claim statement and no second row version.

-- The three-argument submit_actuations of 0004 stays: instances still running the
-- previous release during a rolling deploy keep calling it. A later migration drops it.

create function submit_actuations(p_items jsonb, p_max_queued integer, p_notify_devices text[], p_instance_id text)
returns table (idx integer, outcome text, id uuid, device_id text, seq bigint, status text,
               created_at timestamptz, expires_at timestamptz, superseded_source_kinds text[])
language plpgsql
set plan_cache_mode = force_generic_plan set enable_seqscan = off set enable_hashjoin = off set enable_mergejoin = off
as $$
#variable_conflict use_column
declare
  n integer := jsonb_array_length(p_items);
  v_id uuid[];
  v_device text[];
  v_idem text[];
  v_outcome text[];
  v_seq bigint[];
  v_same_as integer[];
  v_result_id uuid[];
  v_superseded text[];
  v_offered_session bigint[];
  v_session bigint[];
begin
  select array_agg((e->>'id')::uuid order by o), array_agg(e->>'deviceId' order by o), array_agg(e->>'idempotencyKey' order by o),
         array_agg((e->>'sessionId')::bigint order by o)
    into v_id, v_device, v_idem, v_offered_session
    from jsonb_array_elements(p_items) with ordinality as t(e, o);

  -- Lock the counter rows (a row lock writes no new row version, unlike the upsert it replaces).
  insert into device_counters (device_id)
  select distinct d from unnest(v_device) as d order by 1
  on conflict on constraint device_counters_pkey do nothing;
  perform 1 from device_counters c where c.device_id = any (v_device) order by c.device_id for no key update;

  if v_idem = array_fill(null::text, array[n]) then
    -- No idempotency keys (the common case): a much simpler statement to plan and run.
    -- An item goes out directly when its device's offered session is still open and the
    -- device has nothing queued (so nothing older can be overtaken).
    select array_agg(x.outcome order by x.idx), array_agg(x.seq order by x.idx), array_fill(null::integer, array[n]),
           array_agg(case when x.outcome = 'created' then x.id end order by x.idx),
           array_agg(case when x.outcome = 'created' and x.queued = 0 and x.session_open then x.offered_session end order by x.idx)
      into v_outcome, v_seq, v_same_as, v_result_id, v_session
      from (
        select m.idx, m.id, q.queued, m.offered_session, s.disconnected_at is null and s.id is not null as session_open,
               case when q.queued + m.k <= p_max_queued then 'created' else 'queue_full' end as outcome,
               case when q.queued + m.k <= p_max_queued then c.last_seq + m.k end as seq
          from (select (i - 1)::integer as idx, v_device[i] as device_id, v_id[i] as id, v_offered_session[i] as offered_session,
                       row_number() over (partition by v_device[i] order by i) as k
                  from generate_series(1, n) as i) m
          join device_counters c on c.device_id = m.device_id
          cross join lateral (select count(*)::integer as queued from actuations a
                               where a.device_id = m.device_id and a.status = 'queued') q
          left join lateral (select s.id, s.disconnected_at from device_sessions s
                              where s.id = m.offered_session and s.device_id = m.device_id offset 0) s on true
      ) x;
  else
    -- With idempotency keys. One pass over the items by position, each looked up on its
    -- own (a join between whole batches would be a nested loop here: hash joins are off):
    -- an existing row with its key is returned as is; a repeat of a key earlier in the
    -- batch shares that item's row; the rest create rows, numbered per device (k).
    select array_agg(x.outcome order by x.idx), array_agg(x.seq order by x.idx), array_agg(x.same_as order by x.idx),
           array_agg(case x.outcome when 'existing' then x.existing_id when 'created' then x.id end order by x.idx),
           array_agg(case when x.outcome = 'created' and x.queued = 0 and x.session_open then x.offered_session end order by x.idx)
      into v_outcome, v_seq, v_same_as, v_result_id, v_session
      from (
        select d.idx, d.id, d.existing_id, d.same_as, q.queued, d.offered_session,
               s.disconnected_at is null and s.id is not null as session_open,
               case when d.existing_id is not null then 'existing'
                    when d.same_as is not null then 'same_as'
                    when q.queued + d.k <= p_max_queued then 'created'
                    else 'queue_full' end as outcome,
               case when d.existing_id is not null then d.existing_seq
                    when d.same_as is null and q.queued + d.k <= p_max_queued then c.last_seq + d.k end as seq
          from (
            select e.*, row_number() over (partition by e.device_id, e.existing_id is null and e.same_as is null order by e.idx) as k
              from (
                select i.idx, i.device_id, i.id, i.offered_session, x.id as existing_id, x.seq as existing_seq,
                       case when i.idem is not null and i.first_idx <> i.idx then i.first_idx end as same_as
                  from (select (g - 1)::integer as idx, v_device[g] as device_id, v_idem[g] as idem, v_id[g] as id,
                               v_offered_session[g] as offered_session,
                               (min(g) over (partition by v_device[g], v_idem[g]) - 1)::integer as first_idx
                          from generate_series(1, n) as g) i
                  left join lateral (select a.id, a.seq from actuations a
                                      where a.device_id = i.device_id and a.idempotency_key = i.idem) x on true
              ) e
          ) d
          join device_counters c on c.device_id = d.device_id
          cross join lateral (select count(*)::integer as queued from actuations a
                               where a.device_id = d.device_id and a.status = 'queued') q
          left join lateral (select s.id, s.disconnected_at from device_sessions s
                              where s.id = d.offered_session and s.device_id = d.device_id offset 0) s on true
      ) x;
  end if;

  -- The items that fit are the first ones of each device, so seq stays gap-free.
  insert into actuations (id, device_id, seq, account_id, gateway_id, component_id, command, params,
                          collapse_key, idempotency_key, source, expires_at, ack_timeout_seconds, history,
                          status, sent_at, attempts, last_session_id, last_instance_id, ack_deadline_at)
  select v_id[o], v_device[o], v_seq[o], e->>'accountId', e->>'gatewayId', e->>'componentId', e->>'command',
         coalesce(e->'params', '[]'::jsonb), e->>'collapseKey', e->>'idempotencyKey', e->'source',
         case when (e->>'ttlSeconds')::integer > 0 then now() + (e->>'ttlSeconds')::integer * interval '1 second' end,
         (e->>'ackTimeoutSeconds')::integer,
         case when v_session[o] is null then jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now()))
              else jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now()),
                                     jsonb_build_object('status', 'sent', 'at', now(), 'attempt', 1, 'sessionId', v_session[o], 'instanceId', p_instance_id)) end,
         case when v_session[o] is null then 'queued' else 'sent' end,
         case when v_session[o] is not null then now() end,
         case when v_session[o] is null then 0 else 1 end,
         v_session[o],
         case when v_session[o] is not null then p_instance_id end,
         case when v_session[o] is not null and (e->>'ackTimeoutSeconds')::integer is not null
              then now() + (e->>'ackTimeoutSeconds')::integer * interval '1 second' end
    from jsonb_array_elements(p_items) with ordinality as t(e, o)
   where v_outcome[o] = 'created';

  update device_counters c set last_seq = m.last_seq
    from (select v_device[i] as device_id, max(v_seq[i]) as last_seq
            from generate_series(1, n) as i where v_outcome[i] = 'created' group by 1) m
   where c.device_id = m.device_id;

  -- Latest wins: each device's newest created actuation with a collapse key supersedes
  -- the queued ones before it with that key (also those created earlier in this batch).
  if p_items @? '$[*].collapseKey ? (@ != null)' then
  with newest as (
    select distinct on (a.device_id, a.collapse_key) a.device_id, a.collapse_key, a.id, a.seq
      from actuations a
     where a.id = any (select v_id[i] from generate_series(1, n) as i where v_outcome[i] = 'created')
       and a.collapse_key is not null
     order by a.device_id, a.collapse_key, a.seq desc
  ), superseded as (
    update actuations a
       set status = 'superseded', superseded_by = w.id, completed_at = now(),
           history = a.history || jsonb_build_array(jsonb_build_object('status', 'superseded', 'at', now(), 'supersededBy', w.id))
      from newest w
     where a.device_id = w.device_id and a.collapse_key = w.collapse_key and a.status = 'queued' and a.seq < w.seq
    returning a.source->>'kind' as kind
  )
  select coalesce(array_agg(kind), '{}') into v_superseded from superseded;
  end if;

  -- One NOTIFY per batch (NOTIFY serialises commits), chunked under the 8,000-byte payload limit.
  if cardinality(p_notify_devices) > 0 then
  perform pg_notify('actuation_ready', json_build_object('deviceIds', chunk)::text)
     from (select array_agg(d) as chunk
             from (select d, (row_number() over (order by d) - 1) / 100 as part
                     from unnest(p_notify_devices) as d
                    where d = any (select v_device[i] from generate_series(1, n) as i where v_outcome[i] = 'created')) x
            group by part) chunks;
  end if;

  -- A repeat of a key within the batch answers like the first item with that key.
  return query
  select (i - 1)::integer,
         case when v_outcome[i] <> 'same_as' then v_outcome[i]
              when v_outcome[v_same_as[i] + 1] = 'queue_full' then 'queue_full'
              else 'existing' end,
         a.id, a.device_id, a.seq, a.status, a.created_at, a.expires_at,
         case when i = 1 then v_superseded end
    from generate_series(1, n) as i
    left join actuations a on a.id = coalesce(v_result_id[i], v_result_id[v_same_as[i] + 1])
   order by i;
end;
$$;


-- Delivery: claims up to p_per_device pending actuations of each target device (and at
-- most p_limit in all), oldest device first, and marks them `sent` (in the caller's one
-- transaction, before anything is written to a socket).
-- Targets are (device, session) pairs; only targets whose session is still the device's
-- open one are served, and rows are locked with SKIP LOCKED, so no two instances (or two
-- sessions) ever send the same actuation. Returned in no particular order (the caller
-- sorts by device and seq).
-- p_backlog: a claim for reconnected devices. A target with p_redeliver that has ever
-- acked also gets its actuations sent in an earlier session and never acked; and every
-- target with nothing left of its backlog (what was pending when its session opened) is
-- returned as one row with a null id, so that the caller moves exactly those devices on
-- to live delivery. Actuations created since the session opened are live ones: they go
-- out in order behind the backlog, whichever lane claims them.
create function claim_actuations(p_device_ids text[], p_session_ids bigint[], p_redeliver boolean[],
                                 p_per_device integer, p_limit integer, p_instance_id text, p_backlog boolean)
returns table (id uuid, device_id text, seq bigint, session_id bigint, account_id text, gateway_id text,
               component_id text, command text, params jsonb, created_at timestamptz, source_kind text)
language plpgsql
set plan_cache_mode = force_generic_plan set enable_seqscan = off set enable_hashjoin = off set enable_mergejoin = off
as $$
#variable_conflict use_column
declare
  -- What this claim locked (ids, and the session each goes to), then marks sent below.
  v_ids uuid[];
  v_sessions bigint[];
  -- Backlog claims: the devices whose backlog is drained.
  v_drained text[];
  v_drained_sessions bigint[];
begin
  -- 1. Choose and lock. Each device's rows are locked one by one by primary key, in seq
  --    order; a device's claim stops at its first row that is locked elsewhere (SKIP
  --    LOCKED) or no longer in the status it was chosen in, so a later actuation never
  --    overtakes an earlier one; the rest wait for the next claim. The locks last until
  --    the function's transaction ends.
  if p_backlog then
    with t as (
      select t.*, s.connected_at from unnest(p_device_ids, p_session_ids, p_redeliver) as t(device_id, session_id, redeliver)
       cross join lateral (select s.disconnected_at, s.connected_at from device_sessions s where s.id = t.session_id offset 0) s
       where s.disconnected_at is null
    ), heads as materialized (
      -- Each target's oldest pending actuation: queued, or (redelivery) sent in an earlier session, never acked.
      select t.*, least(q.created_at, u.created_at) as oldest from t
        left join lateral (select a.created_at from actuations a
                            where a.device_id = t.device_id and a.status = 'queued' order by a.seq limit 1) q on true
        left join lateral (select a.created_at from actuations a
                            where t.redeliver and a.device_id = t.device_id and a.status = 'sent'
                              and a.last_session_id is distinct from t.session_id
                              and exists (select 1 from device_counters c where c.device_id = t.device_id and c.has_acked)
                            order by a.seq limit 1) u on true
    ), first_devices as materialized (
      -- Oldest device first: only the first p_limit devices can get anything in this claim.
      select h.* from heads h where h.oldest is not null order by h.oldest, h.device_id limit p_limit
    ), pending as (
      select a.id, a.device_id, a.seq, a.status, d.oldest, d.session_id from first_devices d
       cross join lateral (
         select a.id, a.device_id, a.seq, a.status from actuations a
          where a.device_id = d.device_id and a.status = 'queued'
          order by a.seq limit p_per_device) a
      union all
      select a.id, a.device_id, a.seq, a.status, d.oldest, d.session_id from first_devices d
       cross join lateral (
         select a.id, a.device_id, a.seq, a.status from actuations a
          where d.redeliver and a.device_id = d.device_id and a.status = 'sent' and a.last_session_id is distinct from d.session_id
            and exists (select 1 from device_counters c where c.device_id = d.device_id and c.has_acked)
          order by a.seq limit p_per_device) a
    ), chosen as materialized (
      select p.id, p.status, p.session_id, p.device_id, p.seq from (
        select p.*, row_number() over (partition by p.device_id order by p.seq) as position from pending p) p
       where p.position <= p_per_device
       order by p.oldest, p.device_id, p.position limit p_limit
    ), locked as materialized (
      select k.id, k.session_id from (
        select ch.id, ch.session_id,
               bool_and(l.status is not distinct from ch.status) over (partition by ch.device_id order by ch.seq) as in_order
          from chosen ch
          left join lateral (select a.id, a.status from actuations a where a.id = ch.id offset 0 for update skip locked) l on true
      ) k
       where k.in_order
    )
    select (select array_agg(l.id order by l.id) from locked l), (select array_agg(l.session_id order by l.id) from locked l),
           -- Nothing left of their backlog (what was pending when they connected). One whose
           -- backlog this claim finishes is reported by the next one.
           array_agg(h.device_id), array_agg(h.session_id)
      into v_ids, v_sessions, v_drained, v_drained_sessions
      from heads h where h.oldest is null or h.oldest >= h.connected_at;
  else
    -- Live claims (the common case): queued rows only.
    select array_agg(k.id), array_agg(k.session_id) into v_ids, v_sessions
      from (
        select ch.id, ch.session_id,
               bool_and(l.status is not distinct from 'queued') over (partition by ch.device_id order by ch.seq) as in_order
          from (
            select a.id, t.session_id, a.device_id, a.seq from unnest(p_device_ids, p_session_ids) as t(device_id, session_id)
             cross join lateral (select s.disconnected_at from device_sessions s where s.id = t.session_id offset 0) s
             cross join lateral (
               select a.id, a.device_id, a.seq, a.created_at from actuations a
                where a.device_id = t.device_id and a.status = 'queued'
                order by a.seq limit p_per_device) a
             where s.disconnected_at is null
             order by min(a.created_at) over (partition by a.device_id), a.device_id, a.seq limit p_limit
          ) ch
          left join lateral (select a.id, a.status from actuations a where a.id = ch.id offset 0 for update skip locked) l on true
      ) k
     where k.in_order;
  end if;

  -- 2. Mark what was locked `sent` to its session: the one place a claim makes that transition.
  return query
  update actuations a
     set status = 'sent', sent_at = now(), attempts = a.attempts + 1,
         last_session_id = l.session_id, last_instance_id = p_instance_id,
         ack_deadline_at = case when a.ack_timeout_seconds is not null then now() + a.ack_timeout_seconds * interval '1 second' end,
         history = a.history || jsonb_build_array(jsonb_build_object(
           'status', 'sent', 'at', now(), 'attempt', a.attempts + 1, 'sessionId', l.session_id, 'instanceId', p_instance_id))
    from unnest(v_ids, v_sessions) as l(id, session_id)
   where a.id = l.id
  returning a.id, a.device_id, a.seq, l.session_id, a.account_id, a.gateway_id, a.component_id, a.command, a.params,
            a.created_at, a.source->>'kind';

  -- 3. Backlog claims: one row with a null id per drained device.
  return query
  select null::uuid, d.device_id, null::bigint, d.session_id, null::text, null::text, null::text, null::text,
         null::jsonb, null::timestamptz, null::text
    from unnest(v_drained, v_drained_sessions) as d(device_id, session_id);
end;
$$;

-- Acknowledgements by id: a `sent` actuation of the acking device becomes `acked`
-- (code < 400) or `failed`; one already final gets a late-ack entry in its history and
-- keeps its status; an id that is not the device's matches nothing (no row returned).
create function apply_acks(p_ids uuid[], p_device_ids text[], p_codes integer[], p_reasons text[])
returns table (id uuid, device_id text, outcome text, source_kind text, created_at timestamptz)
language plpgsql
set plan_cache_mode = force_generic_plan set enable_seqscan = off set enable_hashjoin = off set enable_mergejoin = off
as $$
#variable_conflict use_column
begin
  return query
  with v as materialized (
    -- Each acked row, looked up by primary key; if it is the acking device's, locked.
    select l.id, f.device_id, l.status, u.code, u.reason
      from unnest(p_ids, p_device_ids, p_codes, p_reasons) as u(id, device_id, code, reason)
     cross join lateral (select a.id, a.device_id from actuations a where a.id = u.id offset 0) f
     cross join lateral (select a.id, a.status from actuations a where a.id = f.id offset 0 for update) l
     where f.device_id = u.device_id
  ), applied as (
    update actuations a
       set status = case when v.code < 400 then 'acked' else 'failed' end,
           completed_at = now(), status_code = v.code, reason_phrase = v.reason,
           history = a.history || jsonb_build_array(jsonb_build_object(
             'status', case when v.code < 400 then 'acked' else 'failed' end, 'at', now(), 'statusCode', v.code, 'reasonPhrase', v.reason))
      from v
     where a.id = v.id and v.status = 'sent'
    returning a.id, a.device_id, a.status as outcome, a.source->>'kind' as source_kind, a.created_at
  ), late as (
    update actuations a
       set history = a.history || jsonb_build_array(jsonb_build_object(
             'event', 'late_ack', 'at', now(), 'statusCode', v.code, 'reasonPhrase', v.reason, 'statusWas', a.status))
      from v
     where a.id = v.id and v.status <> 'sent'
    returning a.id, a.device_id, 'late'::text as outcome, a.source->>'kind' as source_kind, a.created_at
  ), counters as (
    update device_counters c set has_acked = true
     where c.device_id = any (array(select distinct v.device_id from v)) and not c.has_acked
  )
  select * from applied union all select * from late;
end;
$$;
