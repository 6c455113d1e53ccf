-- Jobs (issue 15, continued): a continuous filter target's end, and what jobs retention walks.
--
-- A job whose target is a filter with `continuous: true` keeps adding the devices that
-- match it later (each pass of its releasing instance); at `end_at` (null: never) it stops
-- growing and completes once what it released is final.
alter table jobs add column end_at timestamptz;

-- JOBS_RETENTION_DAYS: finished jobs (completed, or cancelled/aborted and finalized) go this
-- long after they finished, oldest first; their target rows go with them, in batches.
create index jobs_finished_idx on jobs (finished_at) where finished_at is not null;
