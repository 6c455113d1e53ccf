-- Server instances sharing this database. `last_heartbeat_at` is refreshed every
-- `heartbeat_interval_ms` (each instance records its own, so instances configured
-- differently judge each other fairly); one that misses three beats is presumed dead
-- and the sessions it left open are closed by whichever instance notices.
create table instances (
  id                    text primary key,
  started_at            timestamptz not null default now(),
  last_heartbeat_at     timestamptz not null default now(),
  heartbeat_interval_ms integer not null
);

-- One row per authenticated WebSocket connection of a device.
create table device_sessions (
  id               bigint generated always as identity primary key,
  device_id        text not null,
  account_id       text,
  instance_id      text not null,
  remote_address   text,
  connected_at     timestamptz not null default now(),
  last_seen_at     timestamptz not null default now(),
  disconnected_at  timestamptz,
  close_code       integer,
  close_reason     text
);

create index device_sessions_device_idx on device_sessions (device_id, id desc);
-- At most one open session per device across all instances: a takeover closes
-- the old row in the same transaction that opens the new one.
create unique index device_sessions_one_open_idx on device_sessions (device_id) where disconnected_at is null;
create index device_sessions_open_by_instance_idx on device_sessions (instance_id) where disconnected_at is null;
