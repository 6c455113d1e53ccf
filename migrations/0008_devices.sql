-- The device registry: every device that has authenticated, and devices registered
-- (PUT /v1/devices/:id) before they ever connect. One row per device, kept forever
-- (retention deletes sessions and actuations, never a device).
--
-- `account_id` is the account a device belongs to: set by a registration, and by
-- the `accountId` of the token the device last authenticated with (a change is
-- also visible in its session history, `device_sessions.account_id`). API keys
-- limited to accounts see only devices whose `account_id` is one of theirs, and a
-- device with no account only to keys without an account limit.
--
-- `tags` is a flat object of string keys and string values (validated by the API:
-- bounded count and lengths); the GIN index answers `tags @> '{"site":"berlin"}'`.
create table devices (
  device_id      text primary key,
  account_id     text,
  name           text,
  tags           jsonb not null default '{}'::jsonb,
  registered_at  timestamptz,
  first_seen_at  timestamptz,
  last_seen_at   timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  constraint devices_tags_is_object check (jsonb_typeof(tags) = 'object')
);

create index devices_account_idx on devices (account_id, device_id);
create index devices_tags_idx on devices using gin (tags jsonb_path_ops);

-- Devices known from their sessions before the registry existed: their latest
-- session's account, first and last connection.
insert into devices (device_id, account_id, first_seen_at, last_seen_at)
select distinct on (device_id) device_id, account_id,
       min(connected_at) over (partition by device_id),
       max(coalesce(disconnected_at, last_seen_at)) over (partition by device_id)
  from device_sessions
 order by device_id, id desc;
