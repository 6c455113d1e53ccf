-- Ayla DSS event streams this deployment subscribes to. Exactly one instance
-- holds each enabled stream (session advisory lock keyed by the id; see
-- src/dss/stream-supervisor.ts); `holder_instance_id` only reports who.
-- `last_seq` is the last event processed (rules evaluated, actuations committed):
-- the holder reconnects with seq_start = last_seq + 1.
create table dss_streams (
  id                  uuid primary key,
  name                text not null,
  url                 text not null,
  stream_key          text not null,
  enabled             boolean not null default true,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  last_seq            bigint,
  holder_instance_id  text,
  connected           boolean not null default false,
  connected_at        timestamptz,
  last_event_at       timestamptz,
  events              bigint not null default 0,
  heartbeats          bigint not null default 0,
  -- Frames skipped (bad length, bad JSON, unknown event shape) and processing failures.
  errors              bigint not null default 0,
  last_error          text
);

-- Rules turn matched events into actuations. `match` and `action` are validated
-- by the REST API (src/dss/rule-schemas.ts) and stored as given.
create table dss_rules (
  id                uuid primary key,
  name              text not null,
  enabled           boolean not null default true,
  match             jsonb not null,
  action            jsonb not null,
  cooldown_seconds  integer not null default 0 check (cooldown_seconds >= 0),
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);

-- What stateful rules (a `changed` condition, a cooldown) remember per stream,
-- device and property (property_name '' for events without one). `evaluated_seq` is the last event of the stream this
-- row has decided on: a replayed event at or below it was already decided (its
-- actuation, if any, is committed before the row is written) and is not
-- evaluated again.
create table dss_rule_state (
  rule_id         uuid not null references dss_rules (id) on delete cascade,
  stream_id       uuid not null references dss_streams (id) on delete cascade,
  dsn             text not null,
  property_name   text not null,
  last_value      jsonb,
  evaluated_seq   bigint not null,
  last_fired_at   timestamptz,
  primary key (rule_id, stream_id, dsn, property_name)
);
