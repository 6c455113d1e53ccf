-- Session events written by the statements that open and close sessions, not by triggers
-- (issue 12: PostgreSQL's CPU per connect), as 0020 did for actuation events.
--
-- 0012's statement-level triggers on `device_sessions` cost every statement on the table
-- a capture of its transition tables and a second statement joining them with the
-- registry, also for statements that moved nothing: the session statement's `previous`
-- update (a first connect replaces nothing), and the heartbeat's `last_seen_at` refresh of
-- every open session (both transition tables of thousands of rows, matched by nothing).
-- Per connected device the insert trigger cost ~18 µs and `session_event_data` ~7 (a call
-- per row: declared immutable over stable functions, so never inlined).
--
-- Now each statement that opens or closes a session inserts its events itself (a
-- data-modifying CTE, src/gateway/sessions-sql.ts), from the rows it returns:
--
--   (new) -> open             openSession, openSessions: device.connected
--   open -> closed            closeSession, closeOwnOrphanedSessions,
--                             closeSessionsOfDeadInstances, and a takeover (the `previous`
--                             update of openSession, openSessions): device.disconnected
--
-- Same events as the triggers: the same rows, values and order (a takeover's
-- device.disconnected before the device.connected of the same statement, each kind by
-- session id), in the transaction of the transition, filed under the device's account in
-- the registry as the statement leaves it. A row inserted or closed by any other
-- statement (a test's, by hand) writes no event.

drop trigger device_sessions_events_insert on device_sessions;
drop trigger device_sessions_events_update on device_sessions;
drop function sessions_inserted_events();
drop function sessions_updated_events();

-- Inlined into the calling statement (jsonb_build_object is stable, and so is this).
alter function session_event_data(device_sessions) stable;
