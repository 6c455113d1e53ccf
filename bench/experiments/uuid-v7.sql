-- Random (v4) against time-ordered (v7-like) primary keys for actuations (README, dependencies).
--
-- Two tables indexed like `actuations` for rows inserted as `sent`, each with 300,000 rows
-- of history; then 100,000 more rows in 500-row transactions, right after a checkpoint
-- (so that full-page writes count, as they do in production). Run against any scratch database:
--
--   createdb uuid_experiment && psql -d uuid_experiment -f bench/experiments/uuid-v7.sql
--
-- Measured 2026-11-22 on the 2-core machine (PostgreSQL 15), two runs: v4 1,919 / 1,818 ms
-- and 76 MB of WAL, v7 1,560 / 1,745 ms and 66 MB (the v7 timing includes the SQL function
-- that makes the ids, dearer than gen_random_uuid()).

create table a4 (id uuid primary key, device_id text not null, seq bigint not null, status text not null default 'sent',
  payload text, history jsonb, expires_at timestamptz, unique (device_id, seq));
create index on a4 (device_id, seq) where status = 'sent';
create index on a4 (expires_at) where status in ('queued', 'sent') and expires_at is not null;
create table a7 (like a4 including all);

create function uuid7() returns uuid language sql volatile as $$
  select (lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text || clock_timestamp()::text), 1, 19))::uuid $$;

insert into a4 (id, device_id, seq, payload, history, expires_at)
  select gen_random_uuid(), 'd' || (i % 1000), i, repeat('x', 200), '[]', now() + interval '1 day' from generate_series(1, 300000) i;
insert into a7 (id, device_id, seq, payload, history, expires_at)
  select uuid7(), 'd' || (i % 1000), i, repeat('x', 200), '[]', now() + interval '1 day' from generate_series(1, 300000) i;

create procedure ins(t text, v7 boolean, batches int) language plpgsql as $$
begin
  for b in 1..batches loop
    execute format('insert into %I (id, device_id, seq, payload, history, expires_at)
                    select %s, ''d'' || (i %% 1000), %s + i, repeat(''x'', 200), ''[]'', now() + interval ''1 day''
                      from generate_series(1, 500) i',
                   t, case when v7 then 'uuid7()' else 'gen_random_uuid()' end, 1000000 + b * 1000);
    commit;
  end loop;
end $$;

checkpoint;
select pg_current_wal_lsn() as l0 \gset
\timing on
call ins('a4', false, 200);
\timing off
select pg_size_pretty(pg_current_wal_lsn() - :'l0') as wal_v4;
checkpoint;
select pg_current_wal_lsn() as l1 \gset
\timing on
call ins('a7', true, 200);
\timing off
select pg_size_pretty(pg_current_wal_lsn() - :'l1') as wal_v7;
