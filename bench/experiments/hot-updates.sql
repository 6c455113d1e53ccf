-- Would HOT updates make the actuation lifecycle much cheaper? (README, Benchmarks.)
--
-- Two tables of the same shape: `cur` indexed as `actuations` is (status in the partial
-- index predicates, so every transition writes index entries), and `hot` with status in
-- no index (fillfactor 70) plus a small `hot_pending` table for what the partial indexes
-- find. 100 batches of 500 actuations each go queued -> sent -> acked, one commit per
-- step. Run against any scratch database:
--
--   createdb hot_experiment && psql -d hot_experiment -f bench/experiments/hot-updates.sql
--
-- Measured 2026-11-22 on the 2-core machine (PostgreSQL 15): cur 1,929 ms, hot 1,786 ms
-- for 50,000 lifecycles (38.6 vs 35.7 µs each; 53% of the hot updates were HOT).

create table cur (id uuid primary key, device_id text not null, seq bigint not null, status text not null default 'queued',
  payload text, history jsonb not null default '[]', expires_at timestamptz, ack_deadline_at timestamptz,
  collapse_key text, idempotency_key text, last_session_id bigint, unique (device_id, seq));
create unique index on cur (device_id, idempotency_key) where idempotency_key is not null;
create index on cur (device_id, seq) where status = 'queued';
create index on cur (device_id, seq) where status = 'sent';
create index on cur (device_id, collapse_key) where status = 'queued' and collapse_key is not null;
create index on cur (expires_at) where status in ('queued', 'sent') and expires_at is not null;
create index on cur (ack_deadline_at) where status = 'sent' and ack_deadline_at is not null;

create table hot (id uuid primary key, device_id text not null, seq bigint not null, status text not null default 'queued',
  payload text, history jsonb not null default '[]', expires_at timestamptz, ack_deadline_at timestamptz,
  collapse_key text, idempotency_key text, last_session_id bigint, unique (device_id, seq)) with (fillfactor = 70);
create unique index on hot (device_id, idempotency_key) where idempotency_key is not null;
create table hot_pending (device_id text, seq bigint, id uuid not null, sent boolean not null default false,
  expires_at timestamptz, primary key (device_id, seq)) with (fillfactor = 70);
create index on hot_pending (expires_at);

create procedure run_cur(batches int) language plpgsql as $$
declare ids uuid[];
begin
  for b in 1..batches loop
    select array_agg(gen_random_uuid()) into ids from generate_series(1, 500);
    insert into cur (id, device_id, seq, payload, history, expires_at)
      select ids[i], 'd' || (i % 1000), b * 1000 + i, repeat('x', 200), '[{"status":"queued"}]', now() + interval '1 day'
        from generate_series(1, 500) i;
    commit;
    update cur set status = 'sent', last_session_id = 1, history = history || '[{"status":"sent"}]' where id = any (ids);
    commit;
    update cur set status = 'acked', history = history || '[{"status":"acked"}]' where id = any (ids);
    commit;
  end loop;
end $$;

create procedure run_hot(batches int) language plpgsql as $$
declare ids uuid[];
begin
  for b in 1..batches loop
    select array_agg(gen_random_uuid()) into ids from generate_series(1, 500);
    insert into hot (id, device_id, seq, payload, history, expires_at)
      select ids[i], 'd' || (i % 1000), b * 1000 + i, repeat('x', 200), '[{"status":"queued"}]', now() + interval '1 day'
        from generate_series(1, 500) i;
    insert into hot_pending (device_id, seq, id, expires_at)
      select 'd' || (i % 1000), b * 1000 + i, ids[i], now() + interval '1 day' from generate_series(1, 500) i;
    commit;
    update hot set status = 'sent', last_session_id = 1, history = history || '[{"status":"sent"}]' where id = any (ids);
    update hot_pending set sent = true where (device_id, seq) in (select 'd' || (i % 1000), b * 1000 + i from generate_series(1, 500) i);
    commit;
    update hot set status = 'acked', history = history || '[{"status":"acked"}]' where id = any (ids);
    delete from hot_pending where (device_id, seq) in (select 'd' || (i % 1000), b * 1000 + i from generate_series(1, 500) i);
    commit;
  end loop;
end $$;

\timing on
call run_cur(100);
call run_hot(100);
\timing off
select relname, n_tup_upd, n_tup_hot_upd from pg_stat_user_tables where relname in ('cur', 'hot', 'hot_pending') order by 1;
