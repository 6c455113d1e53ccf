/**
 * Experiment (not wired into `npm run bench`): PostgreSQL's own time per `submit_actuations`
 * call at batch sizes 1, 7, 50 and 500 (direct sends to 1,000 devices with open sessions), on
 * two migration directories, one database each, alternately, timed inside the server (a DO
 * loop: no network, no client, no commit), so a function's fixed cost per call and its cost
 * per item show apart. Prints the medians over ROUNDS (the first dropped) and the median of
 * the paired ratios. Made for migration 0026 (README, issue 12):
 *
 *   mkdir -p /tmp/mig-old && cp migrations/*.sql /tmp/mig-old && rm /tmp/mig-old/0026_*.sql
 *   DATABASE_URL=postgres://… npx tsx bench/experiments/submit-batch-sizes.ts /tmp/mig-old migrations 11
 */
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { makeLogger } from '../../src/logger.js';
const url = (process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/[^/]*$/, '');
const [oldDir, newDir, roundsArg] = process.argv.slice(2);
if (!oldDir || !newDir) throw new Error('usage: submit-batch-sizes.ts OLD_MIGRATIONS_DIR NEW_MIGRATIONS_DIR [ROUNDS]');
const admin = new pg.Client(url + 'postgres'); await admin.connect();
const dbs: { name: string; pool: pg.Pool; db: string }[] = [];
const itemsFn = `create or replace function bench_items(p_n int, p_round int) returns jsonb language sql as $$
  select jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'deviceId', 'd' || ((p_round * p_n + k) % 1000), 'componentId', 'c', 'command', 'x',
     'params', '[{"name":"t","value":1}]'::jsonb, 'accountId', null, 'gatewayId', 'd' || ((p_round * p_n + k) % 1000), 'ttlSeconds', 86400,
     'ackTimeoutSeconds', null, 'collapseKey', null, 'idempotencyKey', null, 'source', '{"kind":"rest","caller":"a","requestId":"r"}'::jsonb,
     'sessionId', (select id from device_sessions s where s.device_id = 'd' || ((p_round * p_n + k) % 1000))) order by k)
  from generate_series(0, p_n - 1) k $$`;
try {
  for (const [name, dir] of [['old', oldDir], ['new', newDir]] as const) {
    const db = `rp_pair_${name}_${process.pid}`;
    await admin.query(`create database ${db}`);
    const pool = new pg.Pool({ connectionString: url + db, max: 1 });
    await migrate(pool as never, makeLogger({ level: 'silent' }), dir!);
    await pool.query(`insert into devices (device_id, account_id) select 'd' || i, 'acc' from generate_series(0, 999) i`);
    await pool.query(`insert into device_sessions (device_id, account_id, instance_id) select 'd' || i, 'acc', 'i1' from generate_series(0, 999) i order by i`);
    await pool.query(itemsFn);
    dbs.push({ name, pool, db });
  }
  const rounds = Number(roundsArg ?? 6);
  const res: Record<string, Record<number, number[]>> = { old: {}, new: {} };
  for (let r = 0; r < rounds; r++) {
    for (const b of [1, 7, 50, 500]) {
      const calls = b >= 500 ? 6 : b >= 50 ? 30 : 100;
      for (const d of r % 2 ? [...dbs].reverse() : dbs) {
        await d.pool.query(`do $$ declare t0 timestamptz; its jsonb[]; i int; begin
          its := array(select bench_items(${b}, g + ${r * 1000}) from generate_series(1, ${calls}) g);
          t0 := clock_timestamp();
          for i in 1..${calls} loop perform * from submit_actuations(its[i], 1000000, '{}', 'i1'); end loop;
          perform set_config('bench.us', (extract(epoch from clock_timestamp() - t0) * 1e6 / ${calls})::text, false); end $$`);
        const us = Number((await d.pool.query(`select current_setting('bench.us') as us`)).rows[0].us);
        if (r > 0) ((res[d.name]![b] ??= [])).push(us);
        await d.pool.query(`truncate event_rows, actuations`);
      }
    }
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  for (const b of [1, 7, 50, 500]) {
    const o = med(res.old![b]!), n = med(res.new![b]!);
    const ratios = res.new![b]!.map((x, i) => x / res.old![b]![i]!);
    console.log(`batch ${b}: old ${o.toFixed(0)} µs/call (${(o / b).toFixed(1)} µs/item), new ${n.toFixed(0)} µs/call (${(n / b).toFixed(1)} µs/item), new/old median ${med(ratios).toFixed(2)}`);
  }
} finally {
  for (const d of dbs) { await d.pool.end(); await admin.query(`drop database ${d.db}`); }
  await admin.end();
}
