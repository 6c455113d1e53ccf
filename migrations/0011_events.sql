-- The change feed's events, in the order they became visible (commit order), each
-- with a position `id` that only grows. This table is the contract between whoever
-- records events (transitions of actuations, sessions and DSS streams: the feed's
-- outbox, migration 0012) and whoever reads them (GET /v1/events, webhooks): a
-- reader that has seen id N reads `where id > N order by id` and never misses one,
-- because ids are assigned only once the transaction that caused an event has
-- committed (never at write time, where a later id can commit first).
--
-- `data` is the event's payload as the API shows it; `device_id` and `account_id`
-- are copied out of it so that readers filter on indexed columns, and an API key
-- limited to accounts sees only its accounts' events.
-- After each sequencing pass, `pg_notify('iotws_events', <last id>)` wakes readers.
create table events (
  id          bigint primary key,
  type        text not null,
  at          timestamptz not null,
  data        jsonb not null,
  device_id   text,
  account_id  text
);

create index events_device_idx on events (device_id, id) where device_id is not null;
