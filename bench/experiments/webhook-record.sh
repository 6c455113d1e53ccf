#!/usr/bin/env bash
# What one webhook delivery's record costs PostgreSQL (README, "Webhooks: events → one
# endpoint"): webhook-record.sql (the statement of recordAttempt, one new delivery row and
# the cursor moved) by pgbench, one client, against scratch databases at every migration:
#   text      -M extended (unnamed, as node-postgres sends a query with values): planned at
#             every call, with webhook_deliveries' foreign key to webhooks (main before migration 0021)
#   prepared  -M prepared: planned once per connection (a named statement), with the foreign key
#   nofk      prepared, without the foreign key (its check per inserted row): as now
# Alternated in short runs so that the machine's load falls on all alike; prints the
# latency average (ms) of each run and the median per variant.
#   bench/experiments/webhook-record.sh [rounds] [seconds]   (DATABASE_URL: a server to create them on)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
rounds=${1:-3}
seconds=${2:-5}
url() { echo "${base%/*}/exp_wh_$1"; }
make_db() {
  local name=$1
  psql -X -q "$base" -c "drop database if exists exp_wh_$name" -c "create database exp_wh_$name"
  for f in migrations/*.sql; do psql -X -q -v ON_ERROR_STOP=1 "$(url "$name")" -f "$f" >/dev/null; done
  psql -X -q "$(url "$name")" -c "insert into webhooks (id, url, event_types, secret, lease_owner, lease_until)
    values ('00000000-0000-4000-8000-000000000001', 'http://x/', '{actuation.acked}', 'secret-secret-secret', 'bench', now() + interval '1 day')"
}
make_db text
make_db prepared
make_db nofk
for v in text prepared; do
  psql -X -q "$(url "$v")" -c "alter table webhook_deliveries add constraint webhook_deliveries_webhook_id_fkey foreign key (webhook_id) references webhooks (id) on delete cascade"
done
declare -A runs
for r in $(seq 1 "$rounds"); do
  for v in text prepared nofk; do
    mode=prepared; [[ $v == text ]] && mode=extended
    lat=$(pgbench -n -M "$mode" -c 1 -T "$seconds" -f bench/experiments/webhook-record.sql "$(url "$v")" 2>/dev/null | awk '/latency average/ {print $4}')
    echo "round $r $v: $lat ms"
    runs[$v]="${runs[$v]:-} $lat"
  done
done
for v in text prepared nofk; do
  echo "$v median: $(tr ' ' '\n' <<<"${runs[$v]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms"
done
for v in text prepared nofk; do psql -X -q "$base" -c "drop database exp_wh_$v"; done
