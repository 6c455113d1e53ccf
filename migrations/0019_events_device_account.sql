-- The account of an event is its device's account in the registry (`devices.account_id`,
-- migration 0008), as for every other thing that hangs off a device: the rule of
-- src/devices/account-scope.ts. 0012 copied the actuation row's own `account_id`, which
-- is the `accountId` the poster put in the command (sent to the device, not checked
-- against the registry for callers without an account limit, nor for DSS rules), and the
-- session's token account: a key of one account could then be told about another
-- account's device, and miss its own. The payload's `accountId` stays what the row says
-- (the command's field, the token's account); only the filtering column changes.
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

-- The session statements upsert the device row in the same statement (the registry
-- records the token's account on connect), so the row read here is already this one's.
create or replace function sessions_inserted_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.connected', session_event_data(n), n.device_id, coalesce(d.account_id, n.account_id)
    from new_rows n left join devices d on d.device_id = n.device_id
   order by n.id;
  return null;
end;
$$;

create or replace function sessions_updated_events() returns trigger
language plpgsql set enable_hashjoin = on set enable_seqscan = on as $$
begin
  insert into event_outbox (type, data, device_id, account_id)
  select 'device.disconnected', session_event_data(n), n.device_id, coalesce(d.account_id, n.account_id)
    from new_rows n join old_rows o on o.id = n.id
    left join devices d on d.device_id = n.device_id
   where o.disconnected_at is null and n.disconnected_at is not null
   order by n.id;
  return null;
end;
$$;
