-- pgbench script for event-write-once.sh: one "bulk round" of 200 actuations, each
-- created, sent and acked in its own statement and transaction (three events each, as
-- in the actuations bench), then one sequencer pass.
with ins as (
  insert into actuations (id, device_id, seq, gateway_id, component_id, command, source)
  select gen_random_uuid(), 'exp-' || i, nextval('exp_seq'), 'g', 'c', 'cmd', '{"kind": "rest", "caller": "x", "requestId": "r"}'
    from generate_series(1, 200) i
  returning id
) select array_agg(id)::text as ids from ins \gset
update actuations set status = 'sent', attempts = 1, sent_at = now(), last_session_id = 1, last_instance_id = 'i' where id = any (':ids'::uuid[]);
update actuations set status = 'acked', status_code = 200, reason_phrase = 'OK', completed_at = now() where id = any (':ids'::uuid[]);
select * from sequence_events(1000);
