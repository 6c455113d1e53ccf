-- Rate limits of API keys, the audit log of mutating REST calls, and revocations of
-- device tokens (src/http/rate-limit.ts, src/audit/, src/gateway/token-revocations.ts).

-- A key's own rate limit: requests per second (token bucket) and the burst above it.
-- Null: the configured default (API_KEY_RATE_LIMIT). Shared by the live instances
-- (each enforces rate ÷ live instances), see the README's "Rate limits".
alter table api_keys
  add column rate_limit integer,
  add column rate_burst integer,
  add constraint api_keys_rate_limit_positive check (rate_limit is null or rate_limit > 0),
  add constraint api_keys_rate_burst_positive check (rate_burst is null or (rate_limit is not null and rate_burst >= 1));

-- One row per mutating REST call (POST, PUT, PATCH, DELETE), written in batches after
-- the answer. Never a body, never a header: who (`key_id`, or the bootstrap user's
-- name in `actor` with `actor_kind` 'bootstrap'; 'anonymous' for a refused credential),
-- what (`method`, the route template, the ids it named in `targets`), the answer's
-- `status`, `request_id`, `remote_address` and when.
--
-- `id` is a UUIDv7 made by the instance when the call arrived, so id order is time order:
-- the cursor of GET /v1/audit, `since` (from the UUIDv7 of that time) and the retention
-- pass (RETENTION_DAYS) all walk the primary key, with no index on `at` to maintain; and a
-- batch retried after a flush that timed out but committed writes nothing twice
-- (on conflict do nothing).
create table audit_log (
  id              uuid primary key,
  at              timestamptz not null,
  actor_kind      text not null,
  key_id          uuid,
  actor           text,
  method          text not null,
  route           text not null,
  targets         jsonb not null default '{}'::jsonb,
  status          integer not null,
  request_id      text not null,
  remote_address  text,
  constraint audit_log_actor_kind check (actor_kind in ('key', 'bootstrap', 'anonymous')),
  constraint audit_log_targets_is_object check (jsonb_typeof(targets) = 'object')
);

-- GET /v1/audit?keyId=: one key's calls in id order.
create index audit_log_key_idx on audit_log (key_id, id) where key_id is not null;

-- POST /v1/devices/:id/revoke-tokens: the device's tokens issued (`iat`) before
-- `revoked_before` are refused, and so is every token of the device without `iat`.
-- One row per device (a new revocation moves the time forward). Read whole at start
-- and kept by every instance, refreshed by NOTIFY `device_tokens:revoked` and by a
-- poll of `updated_at` every INSTANCE_HEARTBEAT_MS.
create table device_token_revocations (
  device_id       text primary key,
  revoked_before  timestamptz not null,
  updated_at      timestamptz not null default now()
);

create index device_token_revocations_updated_idx on device_token_revocations (updated_at);
