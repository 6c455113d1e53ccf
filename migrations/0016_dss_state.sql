-- The devices' last known state as DSS events arrive (src/dss/state-recorder.ts),
-- a bounded log of recent events per stream, and interval rules (src/dss/interval-tasks.ts).
-- All of it but the rules' own columns is derived data: replaying a stream rewrites it.

-- Per device and property, the latest datapoint(ack) value. "Latest" is the highest
-- seq of the stream that wrote it; an event of another stream wins only with a later
-- event time (seqs of two streams do not compare). `updated_at` is the event's own time
-- (DSS `datapoint.updated_at`; the receive time when the event has none).
create table dss_device_state (
  dsn            text not null,
  property_name  text not null,
  stream_id      uuid not null,
  seq            bigint not null,
  oem_model      text,
  base_type      text,
  value          jsonb,
  updated_at     timestamptz not null,
  primary key (dsn, property_name)
);
-- Interval rules page through one property's devices in dsn order.
create index dss_device_state_property_idx on dss_device_state (property_name, dsn);

-- Per device, the latest connectivity status (DSS `connection.status`), same ordering.
create table dss_device_connectivity (
  dsn         text primary key,
  stream_id   uuid not null,
  seq         bigint not null,
  oem_model   text,
  status      text not null,
  updated_at  timestamptz not null
);

-- Recent events per stream, kept DSS_EVENT_LOG_HOURS after their arrival (the
-- retention pass deletes older rows, oldest first, through the received_at index).
create table dss_event_log (
  stream_id      uuid not null references dss_streams (id) on delete cascade,
  seq            bigint not null,
  event_type     text not null,
  dsn            text not null,
  oem_model      text,
  property_name  text,
  base_type      text,
  value          jsonb,
  at             timestamptz not null,
  received_at    timestamptz not null default now(),
  primary key (stream_id, seq)
);
create index dss_event_log_dsn_idx on dss_event_log (stream_id, dsn, seq);
create index dss_event_log_received_idx on dss_event_log (received_at);

-- Interval rules: `every` as given ("5m") and in seconds; null for event rules.
-- `next_run_at` is claimed with FOR UPDATE SKIP LOCKED and pushed a lease ahead while
-- an evaluation runs (`evaluation_open`); an evaluation left open by a crash is taken
-- up again, with the same number, once the lease ran out.
alter table dss_rules
  add column every text,
  add column every_seconds integer check (every_seconds >= 10),
  add column next_run_at timestamptz,
  add column evaluations bigint not null default 0,
  add column evaluation_open boolean not null default false;
create index dss_rules_next_run_idx on dss_rules (next_run_at) where every_seconds is not null and enabled;

-- One row per evaluation of an interval rule: what it matched and fired, which
-- instance took it and how many times it was taken (more than once: taken up again
-- after its instance died).
create table dss_rule_evaluations (
  rule_id      uuid not null references dss_rules (id) on delete cascade,
  number       bigint not null,
  instance_id  text not null,
  claims       integer not null default 1,
  started_at   timestamptz not null default now(),
  finished_at  timestamptz,
  matched      integer not null default 0,
  fired        integer not null default 0,
  primary key (rule_id, number)
);

-- When an interval rule last fired for a device (its cooldown).
create table dss_interval_fired (
  rule_id        uuid not null references dss_rules (id) on delete cascade,
  dsn            text not null,
  last_fired_at  timestamptz not null,
  primary key (rule_id, dsn)
);
