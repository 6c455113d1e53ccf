-- Jobs: one actuation for each device of a target, released at a paced rate by one
-- instance at a time, and schedules that create a job at each cron occurrence.
--
-- States: scheduled -> running -> completed | cancelled | aborted (scheduled -> cancelled too).
-- A job's actuations carry the idempotency key `job:<job id>:<device id>`, so whatever
-- crashes and takeovers happen, a device gets at most one actuation of a job.
--
-- Schedules are created before jobs: a job names the schedule occurrence that created it.
create table schedules (
  id                     uuid primary key,
  name                   text not null,
  cron                   text not null,
  timezone               text not null,
  -- The job body (POST /v1/jobs without startAt) each occurrence creates.
  job                    jsonb not null,
  enabled                boolean not null default true,
  misfire_grace_seconds  integer not null,
  -- The accounts of the API key that created it (null: no limit); its jobs inherit them.
  accounts               text[],
  created_by             jsonb not null,
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now(),
  -- Every occurrence up to and including this one is decided (fired or skipped).
  decided_until          timestamptz not null,
  -- The first occurrence after decided_until (null: the cron has none); what the scheduler waits for.
  next_occurrence_at     timestamptz
);

create index schedules_due_idx on schedules (next_occurrence_at) where enabled and next_occurrence_at is not null;

-- One row per decided occurrence: the primary key makes "exactly one job per occurrence"
-- a constraint of the database, whatever the number of instances.
create table schedule_runs (
  schedule_id  uuid not null references schedules (id) on delete cascade,
  occurrence   timestamptz not null,
  outcome      text not null check (outcome in ('fired', 'skipped')),
  job_id       uuid,
  decided_at   timestamptz not null default now(),
  decided_by   text not null,
  primary key (schedule_id, occurrence)
);

create table jobs (
  id                    uuid primary key,
  name                  text not null,
  state                 text not null default 'scheduled'
                        check (state in ('scheduled', 'running', 'completed', 'cancelled', 'aborted')),
  state_reason          text,
  -- {"deviceIds": <count>} (the ids are rows of job_targets) or {"filter": {tags?, accountId?, online?}}.
  target                jsonb not null,
  -- The accounts of the API key that created the job (null: no limit): only their devices are targeted.
  accounts              text[],
  -- The actuation each target gets: {componentId, command, params, ttlSeconds?, ackTimeoutSeconds?, ...}.
  actuation             jsonb not null,
  max_per_minute        integer,
  abort_failed_percent  double precision,
  abort_min_completed   integer,
  start_at              timestamptz not null,
  -- What created it: {"kind":"rest","caller","requestId"} or {"kind":"schedule","scheduleId","occurrence"}.
  created_by            jsonb not null,
  schedule_id           uuid references schedules (id) on delete set null,
  created_at            timestamptz not null default now(),
  started_at            timestamptz,
  finished_at           timestamptz,
  target_count          integer,
  released_count        integer not null default 0,
  -- The releasing instance and until when it holds the job (renewed every JOBS_POLL_MS).
  lease_owner           text,
  lease_until           timestamptz,
  -- A cancelled or aborted job's queued actuations were cancelled after its last release.
  finalized             boolean not null default false,
  -- Every state change and takeover, with its time: [{at, state | event, ...}].
  timeline              jsonb not null default '[]'
);

create index jobs_start_idx on jobs (start_at) where state = 'scheduled';
-- What the releasers look at: running jobs, and stopped ones whose last sweep is not done.
create index jobs_active_idx on jobs (id) where state = 'running' or (state in ('cancelled', 'aborted') and not finalized);
create index jobs_schedule_idx on jobs (schedule_id, created_at) where schedule_id is not null;

-- A job's target devices: written at creation (deviceIds) or when it starts (a filter's
-- snapshot, one INSERT ... SELECT). Released in device_id order, a page at a time.
create table job_targets (
  job_id        uuid not null references jobs (id) on delete cascade,
  device_id     text not null,
  released_at   timestamptz,
  -- The actuation created for it; null once released without one (`refused` says why).
  actuation_id  uuid,
  refused       text,
  primary key (job_id, device_id)
);

create index job_targets_pending_idx on job_targets (job_id, device_id) where released_at is null;
