-- Per-device counters: the next actuation sequence number (gap-free: assigned in
-- the inserting transaction, under this row's lock) and whether the device has
-- ever acknowledged anything (only such devices get unacked actuations re-sent).
create table device_counters (
  device_id   text primary key,
  last_seq    bigint not null default 0,
  has_acked   boolean not null default false
);

-- Actuations: commands for devices, from the REST API or a DSS rule.
-- Lifecycle: queued -> sent -> acked | failed | timed_out; queued|sent -> expired;
-- queued -> cancelled | superseded. Every transition appends to `history`.
create table actuations (
  id               uuid primary key,
  device_id        text not null,
  seq              bigint not null,
  status           text not null default 'queued'
                   check (status in ('queued', 'sent', 'acked', 'failed', 'expired', 'cancelled', 'superseded', 'timed_out')),
  account_id       text,
  gateway_id       text not null,
  component_id     text not null,
  command          text not null,
  params           jsonb not null default '[]',
  collapse_key     text,
  superseded_by    uuid references actuations (id),
  idempotency_key  text,
  -- Where it came from: {"kind":"rest","caller","requestId"} or {"kind":"dss","streamId","seq","ruleId"}.
  source           jsonb not null,
  created_at       timestamptz not null default now(),
  expires_at       timestamptz,
  ack_timeout_seconds integer,
  ack_deadline_at  timestamptz,
  sent_at          timestamptz,
  completed_at     timestamptz,
  attempts         integer not null default 0,
  last_session_id  bigint,
  last_instance_id text,
  status_code      integer,
  reason_phrase    text,
  history          jsonb not null default '[]',
  unique (device_id, seq)
);

-- Same key for the same device = the same actuation. Partial: most actuations have no key,
-- and every index a transition must update costs PostgreSQL CPU on the hot path.
create unique index actuations_idempotency_idx on actuations (device_id, idempotency_key) where idempotency_key is not null;

-- Delivery: a device's queued actuations in order; sent ones separately, for redelivery
-- (devices that never ack keep rows in `sent` until their TTL, and the live path must not scan them).
create index actuations_queued_idx on actuations (device_id, seq) where status = 'queued';
create index actuations_sent_idx on actuations (device_id, seq) where status = 'sent';
create index actuations_collapse_idx on actuations (device_id, collapse_key) where status = 'queued' and collapse_key is not null;
-- Sweeps: what expires or times out next.
create index actuations_expiry_idx on actuations (expires_at) where status in ('queued', 'sent') and expires_at is not null;
create index actuations_ack_deadline_idx on actuations (ack_deadline_at) where status = 'sent' and ack_deadline_at is not null;
-- Listing a device's actuations newest first uses unique (device_id, seq), read backwards.
