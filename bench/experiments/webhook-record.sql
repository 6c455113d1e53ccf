-- One webhook delivery's record (src/webhooks/delivery-sql.ts, recordAttempt), with a new
-- event id each time (random: a conflict is as rare as in use). See webhook-record.sh.
\set e random(1, 2000000000)
with held as (
  update webhooks set
    cursor = case when true then greatest(cursor, :e) else cursor end,
    not_before = null,
    enabled = case when null::text is null then enabled else false end,
    disabled_reason = coalesce(null::text, disabled_reason),
    lease_owner = case when true then lease_owner else null end,
    lease_until = case when true then lease_until else null end
  where id = '00000000-0000-4000-8000-000000000001' and lease_owner = 'bench' and enabled
    and set_config('synchronous_commit', 'off', true) = 'off'
  returning id
)
insert into webhook_deliveries as d (webhook_id, event_id, event_type, status, attempts, first_attempt_at, last_attempt_at, next_attempt_at, last_status_code, last_error)
select held.id, :e, 'actuation.acked', 'delivered', 1, now(), now(), null, 204, null::text from held
on conflict (webhook_id, event_id) do update set
  status = excluded.status, attempts = d.attempts + 1, last_attempt_at = excluded.last_attempt_at,
  next_attempt_at = excluded.next_attempt_at, last_status_code = excluded.last_status_code, last_error = excluded.last_error;
