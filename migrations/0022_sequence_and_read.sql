-- A sequencing pass that also returns the events it numbered (issue 14: committed → SSE
-- subscriber latency, and the readers' share of PostgreSQL's CPU). The instance whose pass
-- numbered the events fans them out to its subscribers from the pass's own result, instead
-- of a second query (`events_after`) once the pass has committed; other instances still
-- read on the NOTIFY, which `sequence_events` sends as before.
--
-- The pass is 0021's `sequence_events`, unchanged, called first; then, in the same
-- transaction and function, `events_after` over the ids it gave (a statement of its own
-- in this volatile function, so its snapshot sees the batch just inserted). The events
-- reach the caller only with the statement's result, which node-postgres hands over once
-- the statement's transaction has committed: a pass that fails to commit shows nothing.
--
-- One row per event, each carrying the pass's figures; a pass that numbered nothing, or
-- called with p_read false (no subscriber here), returns one row of figures with null
-- event columns; a pass that did not get the lock (another instance's runs) returns no row.
create function sequence_and_read_events(p_limit integer, p_read boolean)
returns table (sequenced integer, last_id bigint, max_lag_seconds double precision,
               id bigint, type text, at timestamptz, data jsonb, device_id text, account_id text,
               actuation_id uuid, seq bigint, actuation_account_id text, previous_status text, attempts integer,
               status_code integer, reason_phrase text, source jsonb, session_id bigint, instance_id text, superseded_by uuid)
language plpgsql
set jit = off
as $$
#variable_conflict use_column
declare
  p record;
begin
  select s.sequenced, s.last_id, s.max_lag_seconds into p from sequence_events(p_limit) s;
  if not found then
    return;
  end if;
  if not p_read or p.sequenced = 0 then
    return query select p.sequenced, p.last_id, p.max_lag_seconds,
      null::bigint, null::text, null::timestamptz, null::jsonb, null::text, null::text, null::uuid, null::bigint, null::text,
      null::text, null::integer, null::integer, null::text, null::jsonb, null::bigint, null::text, null::uuid;
    return;
  end if;
  return query
  select p.sequenced, p.last_id, p.max_lag_seconds,
         e.id, e.type, e.at, e.data, e.device_id, e.account_id, e.actuation_id, e.seq, e.actuation_account_id,
         e.previous_status, e.attempts, e.status_code, e.reason_phrase, e.source, e.session_id, e.instance_id, e.superseded_by
    from events_after(p.last_id - p.sequenced, p.last_id, p.sequenced) e
   order by e.id;
end;
$$;
