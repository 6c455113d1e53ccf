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

-- Events written by the statements that make the transitions, not by triggers (issue 14).
-- 0019's statement-level triggers cost each statement on `actuations` a capture of its
-- transition tables (old and new rows, whole) and a second statement, the trigger's
-- insert-select joining them, also for statements that moved nothing; on the single-POST
-- path, a statement or two per actuation, that fixed cost was most of the feed's cost.
-- Now each transition's statement inserts its events itself (a data-modifying CTE, or the
-- next statement of its function), from the rows it returns: one owner per concept
-- (STYLE.md section 13), `actuation_event()` below, gives every event's columns, and
-- every path that makes a transition inserts what it returns into `actuation_event_rows`:
--
--   (new) -> queued, and sent (direct send)   submit_actuations (insert)
--   queued -> superseded                      submit_actuations (collapse keys)
--   queued -> sent                            claim_actuations (a backlog claim re-sending a `sent` row: no event, as before)
--   sent -> acked | failed                    apply_acks, and the `upTo` ack (src/actuations/transitions-sql.ts)
--   sent -> queued, -> cancelled, -> expired, -> timed_out   src/actuations/transitions-sql.ts
--
-- Same events as 0019's triggers: the same rows, values and order (by device, seq within a
-- statement), in the transaction of the transition; a statement that moves nothing writes
-- nothing. Session and DSS stream events stay with their triggers (a few per connection).

drop trigger actuations_events_insert on actuations;
drop trigger actuations_events_update on actuations;
drop function actuations_inserted_events();
drop function actuations_updated_events();

-- The columns an actuation event is inserted with, in `actuation_event()`'s order.
create view actuation_event_rows as
select type, device_id, account_id, actuation_id, seq, actuation_account_id, previous_status, attempts, status_code,
       reason_phrase, source, session_id, instance_id, superseded_by
  from event_rows;

-- The event of `a` (the row as the transition left it) entering p_status from p_previous
-- (null: created). What 0012's `actuation_event_data` gave: a created actuation's `queued`
-- event has attempts 0 and no session (a direct send's row is already `sent`). Filed
-- under the device's account in the registry (0017). Inlined into the calling statement
-- (an SQL function of one select, called in FROM).
create function actuation_event(a actuations, p_status text, p_previous text)
returns table (type text, device_id text, account_id text, actuation_id uuid, seq bigint, actuation_account_id text,
               previous_status text, attempts integer, status_code integer, reason_phrase text, source jsonb,
               session_id bigint, instance_id text, superseded_by uuid)
language sql stable rows 1 as $$
  select 'actuation.' || p_status, a.device_id, (select d.account_id from devices d where d.device_id = a.device_id),
         a.id, a.seq, a.account_id, p_previous, case when p_previous is null then 0 else a.attempts end,
         a.status_code, a.reason_phrase, a.source,
         case when p_previous is not null then a.last_session_id end,
         case when p_previous is not null then a.last_instance_id end,
         a.superseded_by
$$;

-- The lifecycle functions of 0015, each also writing the events of what it moved.

create or replace function submit_actuations(p_items jsonb, p_max_queued integer, p_notify_devices text[], p_instance_id text)
returns table (idx integer, outcome text, id uuid, device_id text, seq bigint, status text,
               created_at timestamptz, expires_at timestamptz, superseded_source_kinds text[], superseded jsonb)
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
  v_superseded_rows jsonb;
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

  -- The items that fit are the first ones of each device, so seq stays gap-free. A direct
  -- send is inserted as the sent row (one row version): queued, then actuation_sent().
  -- Each created actuation's events: `queued`, and `sent` for a direct send.
  with created as (
  insert into actuations as a (id, device_id, seq, account_id, gateway_id, component_id, command, params,
                          collapse_key, idempotency_key, source, expires_at, ack_timeout_seconds, history,
                          status, sent_at, attempts, last_session_id, last_instance_id, ack_deadline_at)
  select v_id[o], v_device[o], v_seq[o], e->>'accountId', e->>'gatewayId', e->>'componentId', e->>'command',
         coalesce(e->'params', '[]'::jsonb), e->>'collapseKey', e->>'idempotencyKey', e->'source',
         case when (e->>'ttlSeconds')::integer > 0 then now() + (e->>'ttlSeconds')::integer * interval '1 second' end,
         (e->>'ackTimeoutSeconds')::integer,
         case when v_session[o] is null then jsonb_build_array(actuation_history_entry('queued', now()))
              else jsonb_build_array(actuation_history_entry('queued', now()), s.entry) end,
         case when v_session[o] is null then 'queued' else s.status end,
         case when v_session[o] is not null then s.sent_at end,
         case when v_session[o] is null then 0 else s.attempts end,
         case when v_session[o] is not null then s.last_session_id end,
         case when v_session[o] is not null then s.last_instance_id end,
         case when v_session[o] is not null then s.ack_deadline_at end
    from jsonb_array_elements(p_items) with ordinality as t(e, o)
   cross join lateral actuation_sent(0, (e->>'ackTimeoutSeconds')::integer, v_session[o], p_instance_id, now()) s
   where v_outcome[o] = 'created'
  returning a
  )
  insert into actuation_event_rows
  select ev.* from created c
   cross join lateral (select 1 as k, 'queued'::text as entered, null::text as left_status
                       union all
                       select 2, (c.a).status, 'queued' where (c.a).status <> 'queued') t
   cross join lateral actuation_event(c.a, t.entered, t.left_status) ev
   order by (c.a).device_id, (c.a).seq, t.k;

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
           history = a.history || actuation_history_entry('superseded', now(), jsonb_build_object('supersededBy', w.id))
      from newest w
     where a.device_id = w.device_id and a.collapse_key = w.collapse_key and a.status = 'queued' and a.seq < w.seq
    returning a.id, a.device_id, a.seq, a.source->>'kind' as kind, a.created_at, w.id as superseded_by, a as actuation
  ), superseded_events as (
    insert into actuation_event_rows
    select ev.* from superseded x cross join lateral actuation_event(x.actuation, 'superseded', 'queued') ev
     order by x.device_id, x.seq
  )
  select coalesce(array_agg(x.kind), '{}'),
         coalesce(jsonb_agg(jsonb_build_object('id', x.id, 'deviceId', x.device_id, 'seq', x.seq, 'sourceKind', x.kind,
                                               'createdAt', x.created_at, 'supersededBy', x.superseded_by)), '[]'::jsonb)
    into v_superseded, v_superseded_rows
    from superseded x;
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
         case when i = 1 then v_superseded end,
         case when i = 1 then coalesce(v_superseded_rows, '[]'::jsonb) end
    from generate_series(1, n) as i
    left join actuations a on a.id = coalesce(v_result_id[i], v_result_id[v_same_as[i] + 1])
   order by i;
end;
$$;

create or replace function claim_actuations(p_device_ids text[], p_session_ids bigint[], p_redeliver boolean[],
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
  -- Read with each lock, for actuation_sent().
  v_attempts integer[];
  v_ack_timeouts integer[];
  -- The status each was locked in (a backlog claim also re-sends `sent` ones: no transition, no event).
  v_previous text[];
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
      select k.id, k.session_id, k.attempts, k.ack_timeout_seconds, k.status from (
        select ch.id, ch.session_id, l.attempts, l.ack_timeout_seconds, l.status,
               bool_and(l.status is not distinct from ch.status) over (partition by ch.device_id order by ch.seq) as in_order
          from chosen ch
          left join lateral (select a.id, a.status, a.attempts, a.ack_timeout_seconds from actuations a
                              where a.id = ch.id offset 0 for update skip locked) l on true
      ) k
       where k.in_order
    )
    select (select array_agg(l.id order by l.id) from locked l), (select array_agg(l.session_id order by l.id) from locked l),
           (select array_agg(l.attempts order by l.id) from locked l), (select array_agg(l.ack_timeout_seconds order by l.id) from locked l),
           (select array_agg(l.status order by l.id) from locked l),
           -- Nothing left of their backlog (what was pending when they connected). One whose
           -- backlog this claim finishes is reported by the next one.
           array_agg(h.device_id), array_agg(h.session_id)
      into v_ids, v_sessions, v_attempts, v_ack_timeouts, v_previous, v_drained, v_drained_sessions
      from heads h where h.oldest is null or h.oldest >= h.connected_at;
  else
    -- Live claims (the common case): queued rows only.
    select array_agg(k.id), array_agg(k.session_id), array_agg(k.attempts), array_agg(k.ack_timeout_seconds), array_agg('queued'::text)
      into v_ids, v_sessions, v_attempts, v_ack_timeouts, v_previous
      from (
        select ch.id, ch.session_id, l.attempts, l.ack_timeout_seconds,
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
          left join lateral (select a.id, a.status, a.attempts, a.ack_timeout_seconds from actuations a
                              where a.id = ch.id offset 0 for update skip locked) l on true
      ) k
     where k.in_order;
  end if;

  -- 2. Mark what was locked `sent` to its session, with actuation_sent() (the locks keep
  --    attempts and ack_timeout_seconds as read).
  --    Each one that was queued makes its `sent` event.
  return query
  with sent as (
    update actuations a
       set (status, sent_at, attempts, last_session_id, last_instance_id, ack_deadline_at, history)
         = (s.status, s.sent_at, s.attempts, s.last_session_id, s.last_instance_id, s.ack_deadline_at, a.history || s.entry)
      from unnest(v_ids, v_sessions, v_attempts, v_ack_timeouts, v_previous) as l(id, session_id, attempts, ack_timeout_seconds, previous)
     cross join lateral actuation_sent(l.attempts, l.ack_timeout_seconds, l.session_id, p_instance_id, now()) s
     where a.id = l.id
    returning a.id, a.device_id, a.seq, l.session_id, a.account_id, a.gateway_id, a.component_id, a.command, a.params,
              a.created_at, a.source->>'kind' as source_kind, a as actuation, l.previous
  ), sent_events as (
    insert into actuation_event_rows
    select ev.* from sent x cross join lateral actuation_event(x.actuation, 'sent', x.previous) ev
     where x.previous <> 'sent'
     order by x.device_id, x.seq
  )
  select x.id, x.device_id, x.seq, x.session_id, x.account_id, x.gateway_id, x.component_id, x.command, x.params,
         x.created_at, x.source_kind
    from sent x;

  -- 3. Backlog claims: one row with a null id per drained device.
  return query
  select null::uuid, d.device_id, null::bigint, d.session_id, null::text, null::text, null::text, null::text,
         null::jsonb, null::timestamptz, null::text
    from unnest(v_drained, v_drained_sessions) as d(device_id, session_id);
end;
$$;

create or replace function apply_acks(p_ids uuid[], p_device_ids text[], p_codes integer[], p_reasons text[])
returns table (id uuid, device_id text, outcome text, source_kind text, created_at timestamptz,
               seq bigint, session_id bigint, instance_id text, status_code integer, reason_phrase text)
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
       set (status, completed_at, status_code, reason_phrase, history)
         = (r.status, r.completed_at, r.status_code, r.reason_phrase, a.history || r.entry)
      from v
     cross join lateral actuation_acked(v.code, v.reason, now(), null) r
     where a.id = v.id and v.status = 'sent'
    returning a.id, a.device_id, a.status as outcome, a.source->>'kind' as source_kind, a.created_at,
              a.seq, a.last_session_id, a.last_instance_id, a.status_code, a.reason_phrase, a as actuation
  ), applied_events as (
    insert into actuation_event_rows
    select ev.* from applied x cross join lateral actuation_event(x.actuation, x.outcome, 'sent') ev
     order by x.device_id, x.seq
  ), late as (
    -- Not a transition: an entry with `event` instead of `status`.
    update actuations a
       set history = a.history || actuation_history_entry(null, now(), jsonb_build_object(
             'event', 'late_ack', 'statusCode', v.code, 'reasonPhrase', v.reason, 'statusWas', a.status))
      from v
     where a.id = v.id and v.status <> 'sent'
    returning a.id, a.device_id, 'late'::text as outcome, a.source->>'kind' as source_kind, a.created_at,
              a.seq, a.last_session_id, a.last_instance_id, a.status_code, a.reason_phrase
  ), counters as (
    update device_counters c set has_acked = true
     where c.device_id = any (array(select distinct v.device_id from v)) and not c.has_acked
  )
  select x.id, x.device_id, x.outcome, x.source_kind, x.created_at, x.seq, x.last_session_id, x.last_instance_id,
         x.status_code, x.reason_phrase
    from applied x
  union all
  select * from late;
end;
$$;
