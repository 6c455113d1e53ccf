-- What does recording devices in the registry cost the connect path? (README, Benchmarks.)
--
-- The gateway's batched session statement (src/gateway/sessions-sql.ts openSessions) with
-- and without its `registered` CTE (the `devices` upsert), on the real tables
-- (migrations 0001, 0008), in batches of 100 devices, alternating A and B in every round
-- so that the machine's load falls on both alike. Each round reconnects the same 100
-- devices (a device's second and later connects: the upsert's update path; every round
-- closes the previous round's sessions, as a takeover does), one commit per statement as
-- in the server (the commit's own wait is not timed). Run on a migrated scratch
-- database (e.g. a test database):
--
--   psql -d <migrated db> -f bench/experiments/device-registry-connect.sql
--
-- Prints the mean time per device of each variant and their ratio.

create temporary table timings (variant text, ms double precision);

do $$
declare
  ids text[] := array(select 'exp-' || i from generate_series(1, 100) i);
  accounts text[] := array(select 'acct-' || (i % 10) from generate_series(1, 100) i);
  addrs text[] := array(select '127.0.0.1' from generate_series(1, 100) i);
  t0 timestamptz;
begin
  for round in 1..200 loop
    t0 := clock_timestamp();
    with previous as (
       update device_sessions set disconnected_at = now(), close_code = 1000, close_reason = 'session replaced'
        where device_id = any(ids) and disconnected_at is null
       returning id, device_id, instance_id
     ), opened as (
       insert into device_sessions (device_id, account_id, instance_id, remote_address)
       select i.device_id, i.account_id, 'exp', i.remote_address
         from unnest(ids, accounts, addrs) with ordinality as i(device_id, account_id, remote_address, ord),
              (select count(*) from previous) as wait_for_previous
        order by i.ord
       returning id, device_id
     )
     select count(*) into strict round from opened left join previous on previous.device_id = opened.device_id;
    insert into timings values ('sessions only', extract(epoch from clock_timestamp() - t0) * 1000);
    commit;

    t0 := clock_timestamp();
    with previous as (
       update device_sessions set disconnected_at = now(), close_code = 1000, close_reason = 'session replaced'
        where device_id = any(ids) and disconnected_at is null
       returning id, device_id, instance_id
     ), opened as (
       insert into device_sessions (device_id, account_id, instance_id, remote_address)
       select i.device_id, i.account_id, 'exp', i.remote_address
         from unnest(ids, accounts, addrs) with ordinality as i(device_id, account_id, remote_address, ord),
              (select count(*) from previous) as wait_for_previous
        order by i.ord
       returning id, device_id
     ), registered as (
       insert into devices as d (device_id, account_id, first_seen_at, last_seen_at)
       select i.device_id, i.account_id, now(), now() from unnest(ids, accounts) as i(device_id, account_id) order by i.device_id
       on conflict (device_id) do update
          set account_id = coalesce(excluded.account_id, d.account_id),
              first_seen_at = coalesce(d.first_seen_at, excluded.first_seen_at),
              last_seen_at = excluded.last_seen_at,
              updated_at = case when excluded.account_id is distinct from d.account_id and excluded.account_id is not null
                                then now() else d.updated_at end
     )
     select count(*) into strict round from opened left join previous on previous.device_id = opened.device_id;
    insert into timings values ('sessions + registry', extract(epoch from clock_timestamp() - t0) * 1000);
    commit;
  end loop;
end $$;

select variant, round((avg(ms) * 1000 / 100)::numeric, 1) as "µs per device (mean)",
       round((percentile_cont(0.5) within group (order by ms) * 1000 / 100)::numeric, 1) as "µs per device (median)"
  from timings group by variant order by variant desc;
