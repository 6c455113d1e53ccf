/**
 * Experiment (not wired into `npm run bench`): `submit_actuations` on two migration
 * directories, the same batches of 200 direct sends to 1,000 devices alternately on one
 * database each (client-side time per call, median, and the median of paired ratios).
 * Made for the one-devices-probe change (512a7e8, reverted: README issue 12):
 *
 *   mkdir -p /tmp/mig-old /tmp/mig-new && cp migrations/*.sql /tmp/mig-old && cp migrations/*.sql /tmp/mig-new
 *   git show 512a7e8:migrations/0023_submit_event_account.sql > /tmp/mig-new/0023_submit_event_account.sql
 *   DATABASE_URL=postgres://… npx tsx bench/experiments/submit-variants.ts /tmp/mig-old /tmp/mig-new 100
 */
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { makeLogger } from '../../src/logger.js';
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const admin = new pg.Client(url);
await admin.connect();
const [oldDir, newDir, roundsArg] = process.argv.slice(2);
if (!oldDir || !newDir) throw new Error('usage: submit-variants.ts OLD_MIGRATIONS_DIR NEW_MIGRATIONS_DIR [ROUNDS]');
const variants = [{ name: 'old', dir: oldDir }, { name: 'new', dir: newDir }];
const dbUrl = (db: string) => { const u = new URL(url); u.pathname = `/${db}`; return u.toString(); };
const dbs: { name: string; db: string; pool: pg.Pool; sessions: number[] }[] = [];
const devices = 1000, batch = 200, rounds = Number(roundsArg ?? 40);
try {
  for (const v of variants) {
    const db = `submit_variants_${v.name}_${process.pid}`;
    await admin.query(`create database ${db}`);
    const pool = new pg.Pool({ connectionString: dbUrl(db), max: 1 });
    dbs.push({ name: v.name, db, pool, sessions: [] });
    await migrate(pool as never, makeLogger({ level: 'silent' }), v.dir);
    await pool.query(`insert into devices (device_id, account_id) select 'd' || i, 'acc' from generate_series(0, ${devices - 1}) i`);
    const r = await pool.query(`insert into device_sessions (device_id, account_id, instance_id) select 'd' || i, 'acc', 'i1' from generate_series(0, ${devices - 1}) i order by i returning id`);
    dbs.at(-1)!.sessions = r.rows.map((x: { id: string }) => Number(x.id));
  }
  const times: Record<string, number[]> = { old: [], new: [] };
  for (let round = 0; round < rounds; round++) {
    for (const d of round % 2 === 0 ? dbs : [...dbs].reverse()) {
      const start = (round * batch) % devices;
      const items = Array.from({ length: batch }, (_, k) => { const i = (start + k) % devices; return { id: crypto.randomUUID(), deviceId: `d${i}`, componentId: 'c', command: 'x', params: [{ name: 't', value: 1 }], accountId: null, gatewayId: `d${i}`, ttlSeconds: 86400, ackTimeoutSeconds: null, collapseKey: null, idempotencyKey: null, source: { kind: 'rest', caller: 'a', requestId: 'r' }, sessionId: d.sessions[i] }; });
      const t = performance.now();
      const r = await d.pool.query(`select status from submit_actuations($1::jsonb, 100, '{}', 'i1')`, [JSON.stringify(items)]);
      const dt = performance.now() - t;
      if (r.rows.some((x: { status: string }) => x.status !== 'sent')) throw new Error('not all direct sends');
      if (round >= 4) times[d.name]!.push(dt);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  for (const k of ['old', 'new']) console.log(`${k}: median ${median(times[k]!).toFixed(2)} ms per batch of ${batch} direct sends (${(median(times[k]!) * 1000 / batch).toFixed(1)} µs each), ${times[k]!.length} batches`);
  const ratios = times.new!.map((t, i) => t / times.old![i]!);
  console.log(`new / old, median of paired batches: ${median(ratios).toFixed(2)}`);
} finally {
  for (const d of dbs) { await d.pool.end(); await admin.query(`drop database ${d.db}`); }
  await admin.end();
}
