#!/usr/bin/env bash
# What writing the change feed's events costs, by part (README, "Change feed"): the same
# pgbench script (event-write-once.sql: 200 actuations created, sent, acked, then a
# sequencer pass) against scratch databases that differ only in how events are written:
#   off      migrations up to 0018 (all but 0019), the feed's triggers disabled (nothing recorded)
#   outbox   migrations up to 0018 (all but 0019) (outbox row, moved into `events` by the sequencer)
#   outbox_nojit  the same with JIT off for the sequencer's pass (0019 does that for its own)
#   once     all migrations (0019: one row per event, one batch row per pass)
#   once_nojson  0019 with the payload a constant (what building the jsonb costs)
# Alternated in short runs so that the machine's load falls on all alike.
#   bench/experiments/event-write-once.sh [rounds] [seconds]   (DATABASE_URL: a server to create them on)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
rounds=${1:-3}
seconds=${2:-8}
url() { echo "${base%/*}/exp_$1"; }
make_db() {
  local name=$1 upto=$2
  psql -X -q "$base" -c "drop database if exists exp_$name" -c "create database exp_$name"
  for f in migrations/*.sql; do
    [[ $(basename "$f") > "$upto" ]] && break
    psql -X -q -v ON_ERROR_STOP=1 "$(url "$name")" -f "$f" >/dev/null
  done
  psql -X -q "$(url "$name")" -c "create sequence exp_seq"
}
make_db off 0018_zz
make_db outbox 0018_zz
make_db outbox_nojit 0018_zz
psql -X -q "$(url outbox_nojit)" -c "alter function sequence_events(integer) set jit = off"
make_db once 9999
make_db once_nojson 9999
for t in actuations_events_insert actuations_events_update; do psql -X -q "$(url off)" -c "alter table actuations disable trigger $t"; done
psql -X -q "$(url once_nojson)" <<'SQL'
create or replace function actuation_event_data(a actuations, p_previous text) returns jsonb
language sql immutable as $$ select '{"id": "x"}'::jsonb $$;
SQL
for r in $(seq 1 "$rounds"); do
  for v in off outbox outbox_nojit once once_nojson; do
    lat=$(pgbench -n -M simple -c 1 -T "$seconds" -f bench/experiments/event-write-once.sql "$(url "$v")" 2>/dev/null | awk '/latency average/ {print $4}')
    echo "round $r $v $lat"
  done
done | tee /tmp/event-write-once.out
echo
echo "µs per actuation (latency of a round / 200), median of $rounds:"
awk '{print $3, $4}' /tmp/event-write-once.out | sort -k1,1 -k2,2n | awk '{a[$1]=a[$1] " " $2; n[$1]++} END {for (k in a) {split(substr(a[k],2), x, " "); m=x[int((n[k]+1)/2)]; printf "%-12s %7.1f\n", k, m*1000/200}}' | sort
