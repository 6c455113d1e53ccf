/**
 * Fills a migrated database with history, as weeks of traffic would leave it:
 * finished actuations (final states in a realistic mix, each with its history,
 * created over the last `days` days, time-ordered UUIDv7 ids like the server's) and
 * closed sessions, spread over `devices` devices. Generated in SQL
 * (`generate_series`), `chunkSize` rows per statement, each chunk its own
 * transaction; then CHECKPOINT and VACUUM ANALYZE, so that what is measured next is
 * the tables' size, not the bulk load's dirty pages or missing statistics.
 *
 * Used by `npm run bench -- growth` and the chaos `growth` scenario.
 *
 * - Every device's `device_counters.last_seq` is raised past the seqs written, so
 *   actuations posted afterwards to these devices continue the sequence.
 * - Sessions are all closed. Fill before the devices of a run connect, or give the
 *   history devices a prefix of their own (the default): a device's latest session
 *   row is its current one.
 * - Superseded rows carry no `superseded_by` (the chain is not simulated).
 */
import type { Pool } from '../../src/db/pool.js';

export interface FillHistoryOptions {
  /** Finished actuations to insert. */
  actuations: number;
  /** Closed sessions to insert. */
  sessions: number;
  /** Devices the history is spread over (default 10,000). */
  devices?: number;
  /** Device ids are `<devicePrefix><n>`, n from `firstDevice` (default `history-`). */
  devicePrefix?: string;
  /** The first device's number (default 1; the benches' devices count from 0). */
  firstDevice?: number;
  /** History spans this many days back from now (default 28). */
  days?: number;
  /** Rows per statement (default 50,000). */
  chunkSize?: number;
  /** Skip CHECKPOINT and VACUUM ANALYZE at the end (default false). */
  skipVacuum?: boolean;
  /** Called after each chunk. */
  onProgress?: (progress: { table: 'actuations' | 'device_sessions'; done: number; total: number }) => void;
}

export interface FillHistoryResult {
  actuations: number;
  sessions: number;
  /** Wall time of the inserts, and of the CHECKPOINT + VACUUM ANALYZE. */
  insertMs: number;
  vacuumMs: number;
  /** pg_database_size after the fill. */
  databaseBytes: number;
}

export async function fillHistory(pool: Pool, options: FillHistoryOptions): Promise<FillHistoryResult> {
  const devices = options.devices ?? 10_000;
  const prefix = options.devicePrefix ?? 'history-';
  const first = options.firstDevice ?? 1;
  const days = options.days ?? 28;
  const chunk = Math.max(1, options.chunkSize ?? 50_000);
  if (!Number.isInteger(options.actuations) || options.actuations < 0) throw new Error('fillHistory: actuations must be an integer >= 0');
  if (!Number.isInteger(options.sessions) || options.sessions < 0) throw new Error('fillHistory: sessions must be an integer >= 0');
  if (!Number.isInteger(devices) || devices < 1) throw new Error('fillHistory: devices must be an integer >= 1');
  const started = Date.now();

  await pool.query(
    `insert into device_counters (device_id) select $1 || n from generate_series($3::int, $3::int + $2::int - 1) as n on conflict do nothing`,
    [prefix, devices, first],
  );

  for (let start = 0; start < options.actuations; start += chunk) {
    const end = Math.min(options.actuations, start + chunk);
    await inTransaction(pool, async (query) => {
      // Row g of N: device (g mod devices) + 1, created at a time that grows with g over
      // the window (ids then ascend like the server's), with a status drawn from a mix
      // close to a live deployment's: mostly acked, some expired, failed, timed out...
      await query(
        `with g as (
           select g, $1 || ((g % $2::int) + $7::int) as device_id,
                  now() - make_interval(days => $3::int) + (g::float8 / $4::float8) * make_interval(days => $3::int) as created_at,
                  random() as r, uuid_send(gen_random_uuid()) as rnd
             from generate_series($5::bigint, $6::bigint - 1) as g
         ), n as (
           select g.*, row_number() over (partition by g.device_id order by g.g) as k,
                  case when r < 0.80 then 'acked' when r < 0.88 then 'expired' when r < 0.92 then 'failed'
                       when r < 0.95 then 'timed_out' when r < 0.97 then 'cancelled' else 'superseded' end as status
             from g
         ), ins as (
           insert into actuations (id, device_id, seq, status, account_id, gateway_id, component_id, command, params,
                                   collapse_key, idempotency_key, source, created_at, expires_at, sent_at, completed_at,
                                   attempts, last_session_id, last_instance_id, status_code, reason_phrase, history)
           select encode(set_byte(overlay(n.rnd placing substring(int8send((extract(epoch from n.created_at) * 1000)::bigint) from 3) from 1 for 6),
                                  6, (get_byte(n.rnd, 6) & 15) | 112), 'hex')::uuid,
                  n.device_id, c.last_seq + n.k, n.status, 'history-account', n.device_id, 'led-1', 'LED.v1.0',
                  '[{"name":"LED","value":"1"}]'::jsonb,
                  case when n.status = 'superseded' then 'led' end,
                  case when n.g % 10 = 0 then 'history-' || n.g end,
                  case when n.g % 4 = 0 then jsonb_build_object('kind', 'dss', 'streamId', '00000000-0000-7000-8000-000000000001', 'seq', n.g, 'ruleId', '00000000-0000-7000-8000-000000000002')
                       else jsonb_build_object('kind', 'rest', 'caller', 'admin', 'requestId', 'history-' || n.g) end,
                  n.created_at, n.created_at + interval '1 day',
                  case when n.status in ('cancelled', 'superseded') then null else n.created_at + interval '3 ms' end,
                  n.created_at + case n.status when 'expired' then interval '1 day' when 'timed_out' then interval '30 s' else interval '40 ms' end,
                  case when n.status in ('cancelled', 'superseded') then 0 else 1 end,
                  case when n.status in ('cancelled', 'superseded') then null else 1 end, 'history-instance',
                  case n.status when 'acked' then 200 when 'failed' then 500 end,
                  case n.status when 'acked' then 'OK' when 'failed' then 'Internal Server Error' end,
                  case when n.status in ('cancelled', 'superseded')
                       then jsonb_build_array(jsonb_build_object('status', 'queued', 'at', n.created_at),
                                              jsonb_build_object('status', n.status, 'at', n.created_at + interval '40 ms'))
                       else jsonb_build_array(jsonb_build_object('status', 'queued', 'at', n.created_at),
                                              jsonb_build_object('status', 'sent', 'at', n.created_at + interval '3 ms', 'attempt', 1, 'sessionId', 1, 'instanceId', 'history-instance'),
                                              jsonb_build_object('status', n.status, 'at', n.created_at + interval '40 ms')) end
             from n join device_counters c on c.device_id = n.device_id
           returning device_id
         )
         update device_counters c set last_seq = c.last_seq + x.n
           from (select device_id, count(*) as n from ins group by device_id) x
          where c.device_id = x.device_id`,
        [prefix, devices, days, options.actuations, start, end, first],
      );
    });
    options.onProgress?.({ table: 'actuations', done: end, total: options.actuations });
  }

  for (let start = 0; start < options.sessions; start += chunk) {
    const end = Math.min(options.sessions, start + chunk);
    await pool.query(
      `insert into device_sessions (device_id, account_id, instance_id, remote_address, connected_at, last_seen_at, disconnected_at, close_code, close_reason)
       select $1 || ((g % $2::int) + $7::int), 'history-account', 'history-instance', '10.0.0.1', t.at, t.at + t.len, t.at + t.len,
              case when g % 10 < 7 then 1001 when g % 10 < 9 then 1006 else 1000 end,
              case when g % 10 < 7 then 'server shutting down' when g % 10 < 9 then 'instance lost' else 'session replaced' end
         from generate_series($5::bigint, $6::bigint - 1) as g,
              lateral (select now() - make_interval(days => $3::int) + (g::float8 / $4::float8) * make_interval(days => $3::int) as at,
                              make_interval(secs => 60 + (g % 7200)) as len) t`,
      [prefix, devices, days, options.sessions, start, end, first],
    );
    options.onProgress?.({ table: 'device_sessions', done: end, total: options.sessions });
  }
  const insertMs = Date.now() - started;

  const vacuumStarted = Date.now();
  if (!options.skipVacuum) {
    // Outside any transaction (VACUUM refuses one): the pool runs each on its own.
    await checkpoint(pool);
    await pool.query('vacuum (analyze) actuations, device_sessions, device_counters');
    await checkpoint(pool);
  }
  const vacuumMs = Date.now() - vacuumStarted;
  const size = await pool.query<{ bytes: string }>('select pg_database_size(current_database())::text as bytes');
  return { actuations: options.actuations, sessions: options.sessions, insertMs, vacuumMs, databaseBytes: Number(size.rows[0]!.bytes) };
}

async function inTransaction(pool: Pool, fn: (query: (text: string, values: unknown[]) => Promise<unknown>) => Promise<void>): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await fn((text, values) => client.query(text, values));
    await client.query('commit');
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** CHECKPOINT needs superuser or pg_checkpoint; a database user without it skips it. */
async function checkpoint(pool: Pool): Promise<void> {
  await pool.query('checkpoint').catch((err: { code?: string }) => {
    if (err.code !== '42501') throw err;
  });
}
