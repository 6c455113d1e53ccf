-- The lifecycle in one place (STYLE.md section 13): every transition of an actuation is
-- written by one unit, and every history entry by one builder.
--
--   queued -> sent            actuation_sent(): a claim (claim_actuations) and a direct
--                             send (the insert of submit_actuations) both take every column
--                             of the sent row from it
--   sent -> acked | failed    actuation_acked(): an ack by id (apply_acks) and an
--                             `upTo` ack (src/actuations/transitions-sql.ts) both take it
--   (new) -> queued           the insert of submit_actuations
--   sent -> queued            requeue of an unwritten send (transitions-sql.ts)
--   queued -> superseded      submit_actuations (collapse keys)
--   queued|sent -> expired, sent -> timed_out, queued -> cancelled   transitions-sql.ts
--
-- The units are SQL functions that PostgreSQL inlines into the calling statement (checked
-- with EXPLAIN VERBOSE: the plan shows their expressions, no function call), so sharing
-- them costs nothing per row. The transition units return one row and are called in FROM
-- (an inlined set-returning function), so that one call gives the statement all its
-- columns. A direct send stays one row version: the insert writes the sent row at once.
--
-- Changed here with create or replace, except where a result gained columns (drop and
-- create, in this migration's one transaction): submit_actuations also returns what it
-- superseded, apply_acks each row's seq and session, for the typed events of
-- src/actuations/lifecycle.ts. Callers of the previous release read their columns by
-- name and are unaffected by the added ones.

-- One history entry: {"status", "at"} and what the transition adds: a send's attempt,
-- session and instance; an ack's status code and reason phrase; or other details
-- (p_details: a requeue's reason, supersededBy, upTo). With p_status null, an event that
-- is not a transition ({"at", ...p_details}: a late ack, details carry "event").
-- The hot paths (sent, ack by id) pass typed values, so that their entry is built in one
-- jsonb_build_object: appending p_details to it (`||`) cost a claim ~15% more PostgreSQL
-- time per row. Arguments that are constants in the caller fold the case away.
create function actuation_history_entry(p_status text, p_at timestamptz, p_details jsonb default null,
                                        p_attempt integer default null, p_session_id bigint default null,
                                        p_instance_id text default null, p_status_code integer default null,
                                        p_reason_phrase text default null)
returns jsonb language sql stable as $$
  select case when p_status is null then jsonb_build_object('at', p_at) || p_details
              when p_details is not null then jsonb_build_object('status', p_status, 'at', p_at) || p_details
              when p_attempt is not null then jsonb_build_object('status', p_status, 'at', p_at, 'attempt', p_attempt,
                                                                  'sessionId', p_session_id, 'instanceId', p_instance_id)
              when p_status_code is not null then jsonb_build_object('status', p_status, 'at', p_at, 'statusCode', p_status_code,
                                                                      'reasonPhrase', p_reason_phrase)
              else jsonb_build_object('status', p_status, 'at', p_at) end
$$;

-- queued -> sent, attempt p_attempts_before + 1, to the session p_session_id of instance
-- p_instance_id: the sent row's columns and its history entry.
create function actuation_sent(p_attempts_before integer, p_ack_timeout_seconds integer, p_session_id bigint,
                               p_instance_id text, p_at timestamptz)
returns table (status text, sent_at timestamptz, attempts integer, last_session_id bigint, last_instance_id text,
               ack_deadline_at timestamptz, entry jsonb)
language sql stable rows 1 as $$
  select 'sent'::text, p_at, p_attempts_before + 1, p_session_id, p_instance_id,
         case when p_ack_timeout_seconds is not null then p_at + p_ack_timeout_seconds * interval '1 second' end,
         actuation_history_entry('sent', p_at, p_attempt => p_attempts_before + 1, p_session_id => p_session_id,
                                 p_instance_id => p_instance_id)
$$;

-- sent -> acked (p_code < 400) or failed: the row's columns and its history entry
-- (an ack by id: statusCode and reasonPhrase; an `upTo`: p_details {upTo}).
create function actuation_acked(p_code integer, p_reason text, p_at timestamptz, p_details jsonb)
returns table (status text, completed_at timestamptz, status_code integer, reason_phrase text, entry jsonb)
language sql stable rows 1 as $$
  select case when p_code < 400 then 'acked' else 'failed' end, p_at, p_code, p_reason,
         actuation_history_entry(case when p_code < 400 then 'acked' else 'failed' end, p_at, p_details,
                                 p_status_code => p_code, p_reason_phrase => p_reason)
$$;

-- The three-argument submit_actuations of 0004 was kept for instances of the release
-- before 0005 during a rolling deploy; none runs any more, and it was a second writer of
-- queued and superseded rows.
drop function submit_actuations(jsonb, integer, text[]);
drop function submit_actuations(jsonb, integer, text[], text);
-- As in 0005, and: the returned superseded rows (first result row, as jsonb).
create function submit_actuations(p_items jsonb, p_max_queued integer, p_notify_devices text[], p_instance_id text)
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
  insert into actuations (id, device_id, seq, account_id, gateway_id, component_id, command, params,
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
           history = a.history || actuation_history_entry('superseded', now(), jsonb_build_object('supersededBy', w.id))
      from newest w
     where a.device_id = w.device_id and a.collapse_key = w.collapse_key and a.status = 'queued' and a.seq < w.seq
    returning a.id, a.device_id, a.seq, a.source->>'kind' as kind, a.created_at, w.id as superseded_by
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

-- As in 0005, with the sent columns from actuation_sent().
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
      select k.id, k.session_id, k.attempts, k.ack_timeout_seconds from (
        select ch.id, ch.session_id, l.attempts, l.ack_timeout_seconds,
               bool_and(l.status is not distinct from ch.status) over (partition by ch.device_id order by ch.seq) as in_order
          from chosen ch
          left join lateral (select a.id, a.status, a.attempts, a.ack_timeout_seconds from actuations a
                              where a.id = ch.id offset 0 for update skip locked) l on true
      ) k
       where k.in_order
    )
    select (select array_agg(l.id order by l.id) from locked l), (select array_agg(l.session_id order by l.id) from locked l),
           (select array_agg(l.attempts order by l.id) from locked l), (select array_agg(l.ack_timeout_seconds order by l.id) from locked l),
           -- Nothing left of their backlog (what was pending when they connected). One whose
           -- backlog this claim finishes is reported by the next one.
           array_agg(h.device_id), array_agg(h.session_id)
      into v_ids, v_sessions, v_attempts, v_ack_timeouts, v_drained, v_drained_sessions
      from heads h where h.oldest is null or h.oldest >= h.connected_at;
  else
    -- Live claims (the common case): queued rows only.
    select array_agg(k.id), array_agg(k.session_id), array_agg(k.attempts), array_agg(k.ack_timeout_seconds)
      into v_ids, v_sessions, v_attempts, v_ack_timeouts
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
  return query
  update actuations a
     set (status, sent_at, attempts, last_session_id, last_instance_id, ack_deadline_at, history)
       = (s.status, s.sent_at, s.attempts, s.last_session_id, s.last_instance_id, s.ack_deadline_at, a.history || s.entry)
    from unnest(v_ids, v_sessions, v_attempts, v_ack_timeouts) as l(id, session_id, attempts, ack_timeout_seconds)
   cross join lateral actuation_sent(l.attempts, l.ack_timeout_seconds, l.session_id, p_instance_id, now()) s
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

drop function apply_acks(uuid[], text[], integer[], text[]);
-- As in 0005, with the acked/failed columns from actuation_acked(), and each row's seq, session,
-- instance and (as recorded) status code and reason phrase.
create function apply_acks(p_ids uuid[], p_device_ids text[], p_codes integer[], p_reasons text[])
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
              a.seq, a.last_session_id, a.last_instance_id, a.status_code, a.reason_phrase
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
  select * from applied union all select * from late;
end;
$$;
