-- submit_actuations with fewer steps per batch (issue 12: PostgreSQL's CPU per actuation).
-- Same decisions, rows, events and answers as 0020's; three steps change:
--
-- - The counter rows are locked first, and inserted (then locked again) only when a device
--   has none yet: 0020 ran an insert-on-conflict over every device of every batch first.
--   Same lock order (by device id); a new device's row is inserted by whichever batch comes
--   first, as before (on conflict do nothing).
-- - Each created row's `queued` history entry is built once per batch (it is the same for
--   all: one now()), not once per row.
-- - Without idempotency keys or collapse keys (the common case), the answer is built from
--   the arrays the function already holds instead of reading each created row back by id:
--   a created row is exactly what it inserted (id, device, seq, `sent` when direct-sent,
--   else `queued`; created_at = now(), the column's default; expires_at = now() + ttl), and
--   nothing in the batch changed it since (no collapse key: nothing superseded). With keys,
--   a repeat answers like an earlier row and a newer collapse key supersedes: read back, as
--   before.

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
  v_ttl integer[];
  v_devices integer;
  v_locked integer;
  v_collapsed boolean := false;
  v_plain boolean := false;
  -- Every created row's first history entry: the same for the whole batch (one now()).
  v_queued_entry jsonb := actuation_history_entry('queued', now());
begin
  select array_agg((e->>'id')::uuid order by o), array_agg(e->>'deviceId' order by o), array_agg(e->>'idempotencyKey' order by o),
         array_agg((e->>'sessionId')::bigint order by o), array_agg((e->>'ttlSeconds')::integer order by o), count(distinct e->>'deviceId')
    into v_id, v_device, v_idem, v_offered_session, v_ttl, v_devices
    from jsonb_array_elements(p_items) with ordinality as t(e, o);

  -- Lock the counter rows (a row lock writes no new row version, unlike the upsert it replaces).
  -- Only a device seen for the first time lacks one: then insert what is missing and lock again
  -- (the insert-on-conflict probed every device of every batch, for rows that nearly always exist).
  perform 1 from device_counters c where c.device_id = any (v_device) order by c.device_id for no key update;
  get diagnostics v_locked = row_count;
  if v_locked < v_devices then
    insert into device_counters (device_id)
    select distinct d from unnest(v_device) as d order by 1
    on conflict on constraint device_counters_pkey do nothing;
    perform 1 from device_counters c where c.device_id = any (v_device) order by c.device_id for no key update;
  end if;

  if v_idem = array_fill(null::text, array[n]) then
    v_plain := true;
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
         case when v_session[o] is null then jsonb_build_array(v_queued_entry)
              else jsonb_build_array(v_queued_entry, s.entry) end,
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
  v_collapsed := true;
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

  -- Without idempotency keys or collapse keys, each created row is what this function
  -- inserted (created_at is now(), its default): answered from the arrays, not read back.
  if v_plain and not v_collapsed then
    return query
    select (i - 1)::integer, v_outcome[i],
           case when v_outcome[i] = 'created' then v_id[i] end,
           case when v_outcome[i] = 'created' then v_device[i] end,
           case when v_outcome[i] = 'created' then v_seq[i] end,
           case when v_outcome[i] <> 'created' then null when v_session[i] is null then 'queued' else 'sent' end,
           case when v_outcome[i] = 'created' then now() end,
           case when v_outcome[i] = 'created' and v_ttl[i] > 0 then now() + v_ttl[i] * interval '1 second' end,
           case when i = 1 then v_superseded end,
           case when i = 1 then '[]'::jsonb end
      from generate_series(1, n) as i
     order by i;
    return;
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

