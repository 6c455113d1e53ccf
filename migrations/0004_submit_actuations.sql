-- submit_actuations: a whole batch of submissions in one round trip (and, called on its
-- own, one transaction). Each statement below sees what committed before it, so every
-- decision is made under the devices' counter locks taken first:
--   1. lock the devices' counter rows, in device order (concurrent batches cannot deadlock);
--   2. per item, in order: an existing row with its idempotency key is returned as is; a
--      repeat of a key earlier in the batch shares that item's row; beyond the device's
--      queue limit: queue_full; otherwise it is inserted with the device's next seq;
--   3. newer actuations with a collapse key supersede older queued ones of their device;
--   4. one NOTIFY per batch for the devices the caller says another instance may hold.
-- `p_items` is a JSON array of {id, deviceId, accountId, gatewayId, componentId, command,
-- params, collapseKey, idempotencyKey, source, ttlSeconds, ackTimeoutSeconds}. The items
-- are unpacked once into parallel arrays (index = position), which every step unnests.
create function submit_actuations(p_items jsonb, p_max_queued integer, p_notify_devices text[])
returns table (idx integer, outcome text, id uuid, device_id text, seq bigint, status text,
               created_at timestamptz, expires_at timestamptz, superseded_source_kinds text[])
language plpgsql as $$
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
begin
  select array_agg((e->>'id')::uuid order by o), array_agg(e->>'deviceId' order by o), array_agg(e->>'idempotencyKey' order by o)
    into v_id, v_device, v_idem
    from jsonb_array_elements(p_items) with ordinality as t(e, o);

  insert into device_counters as c (device_id)
  select distinct d from unnest(v_device) as d order by 1
  on conflict on constraint device_counters_pkey do update set last_seq = c.last_seq;

  if v_idem = array_fill(null::text, array[n]) then
    -- No idempotency keys (the common case): a much simpler statement to plan and run.
    select array_agg(x.outcome order by x.idx), array_agg(x.seq order by x.idx), array_fill(null::integer, array[n]),
           array_agg(case when x.outcome = 'created' then x.id end order by x.idx)
      into v_outcome, v_seq, v_same_as, v_result_id
      from (
        select m.idx, m.id,
               case when q.queued + m.k <= p_max_queued then 'created' else 'queue_full' end as outcome,
               case when q.queued + m.k <= p_max_queued then c.last_seq + m.k end as seq
          from (select (i - 1)::integer as idx, v_device[i] as device_id, v_id[i] as id,
                       row_number() over (partition by v_device[i] order by i) as k
                  from generate_series(1, n) as i) m
          join device_counters c on c.device_id = m.device_id
          cross join lateral (select count(*)::integer as queued from actuations a
                               where a.device_id = m.device_id and a.status = 'queued') q
      ) x;
  else
    with items as (
      select (i - 1)::integer as idx, v_device[i] as device_id, v_idem[i] as idem, v_id[i] as id
        from generate_series(1, n) as i
    ), existing as (
      select i.idx, a.id, a.seq
        from items i join actuations a on a.device_id = i.device_id and a.idempotency_key = i.idem
       where i.idem is not null
    ), firsts as (
      select i.idx, min(i.idx) over (partition by i.device_id, i.idem) as first_idx from items i where i.idem is not null
    ), decided as (
      select i.idx, i.id, i.device_id, e.id as existing_id, e.seq as existing_seq,
             case when f.first_idx <> i.idx then f.first_idx end as same_as
        from items i left join existing e on e.idx = i.idx left join firsts f on f.idx = i.idx
    ), depth as (
      select a.device_id, count(*)::integer as queued from actuations a
       where a.status = 'queued' and a.device_id in (select distinct d.device_id from decided d) group by a.device_id
    ), numbered as (
      -- Items that would create a row, numbered per device in submission order.
      select d.*, row_number() over (partition by d.device_id order by d.idx) as k
        from decided d where d.existing_id is null and d.same_as is null
    )
    select array_agg(x.outcome order by x.idx), array_agg(x.seq order by x.idx), array_agg(x.same_as order by x.idx),
           array_agg(case x.outcome when 'existing' then x.existing_id when 'created' then x.id end order by x.idx)
      into v_outcome, v_seq, v_same_as, v_result_id
      from (
        select d.idx,
               case when d.existing_id is not null then 'existing'
                    when d.same_as is not null then 'same_as'
                    when coalesce(q.queued, 0) + m.k <= p_max_queued then 'created'
                    else 'queue_full' end as outcome,
               case when d.existing_id is not null then d.existing_seq
                    when coalesce(q.queued, 0) + m.k <= p_max_queued then c.last_seq + m.k end as seq,
               d.same_as, d.existing_id, d.id
          from decided d
          left join numbered m on m.idx = d.idx
          left join depth q on q.device_id = d.device_id
          left join device_counters c on c.device_id = d.device_id
      ) x;
  end if;

  -- The items that fit are the first ones of each device, so seq stays gap-free.
  insert into actuations (id, device_id, seq, account_id, gateway_id, component_id, command, params,
                          collapse_key, idempotency_key, source, expires_at, ack_timeout_seconds, history)
  select v_id[o], v_device[o], v_seq[o], e->>'accountId', e->>'gatewayId', e->>'componentId', e->>'command',
         coalesce(e->'params', '[]'::jsonb), e->>'collapseKey', e->>'idempotencyKey', e->'source',
         case when (e->>'ttlSeconds')::integer > 0 then now() + (e->>'ttlSeconds')::integer * interval '1 second' end,
         (e->>'ackTimeoutSeconds')::integer,
         jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now()))
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
