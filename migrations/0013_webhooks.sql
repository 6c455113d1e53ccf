-- Webhooks (src/webhooks/): endpoints that receive the change feed's events (`events`,
-- migration 0011) as signed HTTP POSTs, at least once and in event order per endpoint.
--
-- Each endpoint has a cursor: the last event id it is done with (delivered, or failed
-- after WEBHOOK_MAX_AGE_HOURS). Its next event is the first matching one after the
-- cursor (`where id > cursor order by id`, which never misses one: event ids only grow
-- and are assigned after commit). Only that head event is ever sent (head-of-line
-- retry), so order holds.
--
-- One sender per endpoint in the whole deployment: an instance takes an endpoint with
-- a lease (`lease_owner`, `lease_until`), claimed with `for update skip locked` and
-- renewed before every attempt; every write a sender makes is conditional on still
-- holding the lease. An instance that dies (SIGKILL) keeps the lease until it runs
-- out (the delivery timeout plus a margin); another instance then takes the endpoint
-- and sends the head event again: at most the one in flight is duplicated.
create table webhooks (
  id              uuid primary key,
  url             text not null,
  event_types     text[] not null,
  -- Write-only in the API. Kept as given (HMAC signing needs it): see the README.
  secret          text not null,
  enabled         boolean not null default true,
  -- The accounts of the API key that created it: only events whose account_id is one
  -- of these are sent. Null: every event (a key not limited to accounts).
  accounts        text[],
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  cursor          bigint not null default 0,
  -- While the head event waits for its retry, the endpoint is not claimed before this.
  not_before      timestamptz,
  lease_owner     text,
  lease_until     timestamptz,
  -- Why it was disabled by the server (a 410 Gone); cleared when re-enabled.
  disabled_reason text,
  constraint webhooks_event_types_not_empty check (cardinality(event_types) > 0)
);

create index webhooks_claim_idx on webhooks (not_before) where enabled;

-- One row per (endpoint, event) that was attempted: the head event's attempts while it
-- is retried (`pending`), then `delivered` or `failed` (given up after max age, or a
-- 410). Settled rows are pruned after RETENTION_DAYS.
create table webhook_deliveries (
  webhook_id        uuid not null references webhooks (id) on delete cascade,
  event_id          bigint not null,
  event_type        text not null,
  status            text not null check (status in ('pending', 'delivered', 'failed')),
  attempts          integer not null,
  first_attempt_at  timestamptz not null,
  last_attempt_at   timestamptz not null,
  next_attempt_at   timestamptz,
  last_status_code  integer,
  last_error        text,
  primary key (webhook_id, event_id)
);

create index webhook_deliveries_settled_idx on webhook_deliveries (last_attempt_at) where status <> 'pending';
