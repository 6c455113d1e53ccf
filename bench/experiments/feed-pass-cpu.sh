#!/usr/bin/env bash
# The change feed's sequencing pass (with its read, as the server calls it:
# sequence_and_read_events) and the window read (events_after), by backend CPU time
# (/proc/<backend pid>/stat, utime + stime), so that waiting for the machine's other work
# does not count: migration 0027 against the migrations before it (issue 14).
#   before   migrations up to 0026 (0022's pass: sequence_events, then events_after; both planned at every call)
#   after    all migrations (0027: generic plans, the pass reads its rows by position)
# Each call is preceded by an insert of N event rows, committed (the backend's CPU for the
# inserts alone is measured too and subtracted); 1,000 calls in one DO block per figure,
# synchronous_commit off (no fsync wait), variants alternated.
#   bench/experiments/feed-pass-cpu.sh [rounds]   (DATABASE_URL: a server on this machine to create them on)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
rounds=${1:-3}
calls=${CALLS:-1000}
url() { echo "${base%/*}/exp_feedpass_$1"; }
make_db() {
  local name=$1 upto=$2
  psql -X -q "$base" -c "drop database if exists exp_feedpass_$name" -c "create database exp_feedpass_$name"
  for f in migrations/*.sql; do
    [[ $(basename "$f") > "$upto" ]] && break
    psql -X -q -v ON_ERROR_STOP=1 "$(url "$name")" -f "$f" >/dev/null
  done
}
# Backend CPU in ms for $calls iterations of: insert $2 rows; commit; $3; commit.
cpu_ms() {
  local db=$1 n=$2 call=$3
  psql -X -q -At "$(url "$db")" <<SQL
set synchronous_commit = off;
create temp table cpu (at text);
select pg_backend_pid() as pid \gset
\set cmd 'awk ''{print \$14 + \$15}'' /proc/' :pid '/stat'
copy cpu from program :'cmd';
do \$\$ declare c bigint; begin for i in 1..$calls loop
  insert into event_rows (type, device_id, actuation_id, seq, previous_status, attempts, source, session_id, instance_id)
  select 'actuation.sent', 'dev-' || g, gen_random_uuid(), g, 'queued', 1, '{"kind": "rest", "caller": "key-abcdefgh", "requestId": "r-1"}', 1, 'instance-0123456789'
    from generate_series(1, $n) g;
  commit;
  $call
  commit;
end loop; end \$\$;
copy cpu from program :'cmd';
select (max(at::bigint) - min(at::bigint)) * 1000 / $(getconf CLK_TCK) from cpu;
SQL
}
make_db before 0026_zz
make_db after 9999
pass='select count(*) into c from sequence_and_read_events(1000, true);'
# A window of 70 events, at a different place each call (as the readers move on), up to 1,000 ids (the live read's window).
window='select count(*) into c from events_after((select last_id from event_sequencer) - 70 * (1 + i % 500), (select last_id from event_sequencer) - 70 * (i % 500), 1000);'
for r in $(seq 1 "$rounds"); do
  for v in before after; do
    for n in 10 70; do
      none=$(cpu_ms "$v" "$n" 'c := 0;')
      echo "$v pass+read/$n $(( $(cpu_ms "$v" "$n" "$pass") - none ))"
    done
    echo "$v events_after/70 $(( $(cpu_ms "$v" 0 "$window") - $(cpu_ms "$v" 0 'c := 0;') ))"
  done
done | tee /tmp/feed-pass-cpu.out
echo
echo "backend CPU per call (µs), median of $rounds rounds of $calls calls:"
sort -k1,1 -k2,2 -k3,3n /tmp/feed-pass-cpu.out | awk -v CALLS="$calls" '{k=$1" "$2; a[k]=a[k]" "$3; n[k]++} END {for (k in a) {split(substr(a[k],2), x, " "); printf "%-28s %7.0f\n", k, x[int((n[k]+1)/2)] * 1000 / CALLS}}' | sort
