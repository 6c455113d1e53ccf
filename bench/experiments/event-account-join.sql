-- What does taking an event's account from the device registry (migration 0017) cost the
-- actuation path? (README, "Change feed".)
--
-- The statement-level triggers that write the outbox rows of actuation events, as 0012
-- wrote them (the actuation's own account_id) and as 0017 does (a left join on `devices`
-- by primary key), alternated in every round so that the machine's load falls on both
-- alike. Each round inserts 200 actuations of 200 registered devices in one statement
-- (the submit path's batch: two events each, `queued` and none other) and moves them to
-- `sent` in another (a claim: one event each); the outbox and the actuations are emptied
-- between rounds and each round commits, not timed. Run on a migrated scratch database (e.g. a test database), never a live one: it
-- replaces the trigger functions while it runs and puts 0017's back at the end.
--
--   psql -d <migrated db> -f bench/experiments/event-account-join.sql
--
-- Prints the mean statement time per actuation (insert + update) of each variant.

create temporary table timings (variant text, ms double precision);

insert into devices (device_id, account_id) select 'exp-' || i, 'acct-' || (i % 10) from generate_series(1, 200) i
  on conflict (device_id) do nothing;

create function exp_old_triggers() returns void language plpgsql as $f$
begin
  create or replace function actuations_inserted_events() returns trigger
  language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
  begin
    insert into event_rows (type, data, device_id, account_id)
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
  create or replace function actuations_updated_events() returns trigger
  language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
  begin
    insert into event_rows (type, data, device_id, account_id)
    select 'actuation.' || n.status, actuation_event_data(n, o.status), n.device_id, n.account_id
      from new_rows n join old_rows o on o.id = n.id
     where n.status is distinct from o.status
     order by n.device_id, n.seq;
    return null;
  end;
  $$;
end;
$f$;

create function exp_new_triggers() returns void language plpgsql as $f$
begin
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
end;
$f$;

do $$
declare
  ids text[] := array(select 'exp-' || i from generate_series(1, 200) i);
  t0 timestamptz;
  v text;
begin
  for round in 1..200 loop
    foreach v in array case when round % 2 = 0 then array['0012', '0017'] else array['0017', '0012'] end loop
      if v = '0012' then perform exp_old_triggers(); else perform exp_new_triggers(); end if;
      t0 := clock_timestamp();
      insert into actuations (id, device_id, seq, gateway_id, component_id, command, source)
      select gen_random_uuid(), d, round * 2 + (v = '0017')::int, d, 'c', 'cmd', '{"kind": "rest"}'
        from unnest(ids) d;
      update actuations set status = 'sent', attempts = 1 where device_id = any(ids) and status = 'queued';
      insert into timings values (v, extract(epoch from clock_timestamp() - t0) * 1000);
      delete from event_rows;
      delete from actuations where device_id = any(ids);
      commit;
    end loop;
  end loop;
end;
$$;

select variant, round((avg(ms) * 1000 / 200)::numeric, 1) as "mean µs per actuation",
       round((percentile_cont(0.5) within group (order by ms) * 1000 / 200)::numeric, 1) as "median µs per actuation"
  from timings group by variant order by variant;

select from exp_new_triggers();
drop function exp_old_triggers();
drop function exp_new_triggers();
delete from actuations where device_id like 'exp-%';
delete from devices where device_id like 'exp-%';
