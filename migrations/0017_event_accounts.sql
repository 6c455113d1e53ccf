-- An event's account (`events.account_id`, what the change feed and webhooks filter a
-- key limited to accounts by) is the account of its device in the registry
-- (`devices.account_id`) when the event is recorded: the rule every other route applies
-- (src/devices/account-scope.ts). 0012 took the actuation's own `account_id`, which is the
-- optional `accountId` body field sent to the device: an actuation posted without it was
-- never shown to its device's account, and one of another account's device that named an
-- account (a caller without a limit may name any) was shown to that account. A session's
-- `account_id` is its token's, null for a token without one. `data.accountId` stays what
-- it was (the actuation's field, the session's token's account).
--
-- One primary-key probe of `devices` per event row, in the statement-level triggers'
-- insert-select. Statement-level AFTER triggers see the whole statement's effects, so a
-- session opened by the statement that also registers its device (sessions-sql.ts,
-- REGISTER_SEEN) gets the account that statement recorded. Events recorded before this
-- migration keep the account they were given.

create or replace function actuations_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
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
  insert into event_outbox (type, data, device_id, account_id)
  select 'actuation.' || n.status, actuation_event_data(n, o.status), n.device_id, d.account_id
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where n.status is distinct from o.status
   order by n.device_id, n.seq;
  return null;
end;
$$;

create or replace function sessions_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.connected', session_event_data(n), n.device_id, d.account_id
    from new_rows n left join devices d on d.device_id = n.device_id
   order by n.id;
  return null;
end;
$$;

create or replace function sessions_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.disconnected', session_event_data(n), n.device_id, d.account_id
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where o.disconnected_at is null and n.disconnected_at is not null
   order by n.id;
  return null;
end;
$$;
