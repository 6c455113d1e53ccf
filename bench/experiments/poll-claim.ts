/**
 * Experiment (not wired into `npm run bench`): what the dispatcher's periodic poll costs,
 * the claim for every live device it used to run against the read it runs now
 * (src/actuations/poll-sql.ts), on the issue-12 tail condition: 1,000 devices with open
 * sessions on this instance, 15,000 `sent` (unacked) actuations, none queued.
 *
 *   DATABASE_URL=postgres://… npx tsx bench/experiments/poll-claim.ts [--devices 1000] [--sent 15000] [--runs 50]
 *
 * A scratch database is created, migrated, filled, timed (each statement `--runs` times,
 * alternating), and dropped. During the claim every target device is held out of direct
 * sends (the dispatcher's `claiming` set), so its duration is how long new actuations for
 * any device wait, as queued rows, once every DISPATCH_POLL_MS.
 */
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { claimPending } from '../../src/actuations/delivery-sql.js';
import { devicesWithQueued } from '../../src/actuations/poll-sql.js';
import { migrate } from '../../src/db/migrate.js';
import { makePool } from '../../src/db/pool.js';
import { makeLogger } from '../../src/logger.js';
import { int } from '../lib/cli.js';
import { fmt, median, percentile } from '../lib/stats.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '1000' }, sent: { type: 'string', default: '15000' }, runs: { type: 'string', default: '50' } } });
const devices = int('devices', values.devices, 1, 100_000);
const sent = int('sent', values.sent, 0, 10_000_000);
const runs = int('runs', values.runs, 1, 10_000);
const adminUrl = process.env.DATABASE_URL;
if (!adminUrl) throw new Error('set DATABASE_URL (a server where this may create and drop a scratch database)');

const name = `iotws_poll_${crypto.randomBytes(4).toString('hex')}`;
const admin = new pg.Client(adminUrl);
await admin.connect();
await admin.query(`create database ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const logger = makeLogger({ level: 'silent' });
const pool = makePool({ connectionString: url.toString(), max: 2 }, logger);
try {
  await migrate(pool, logger);
  const { rows: sessions } = await pool.query<{ id: string; device_id: string }>(
    `insert into device_sessions (device_id, instance_id) select 'd' || i, 'poll-experiment' from generate_series(1, $1) i returning id, device_id`,
    [devices],
  );
  await pool.query(
    `insert into actuations (id, device_id, seq, status, gateway_id, component_id, command, source, sent_at, last_session_id, attempts)
     select gen_random_uuid(), 'd' || (1 + i % $1), 1 + i / $1, 'sent', 'd' || (1 + i % $1), 'c', 'set', '{"kind":"rest"}', now(), 0, 1
       from generate_series(0, $2 - 1) i`,
    [devices, sent],
  );
  await pool.query('vacuum analyze actuations');
  await pool.query('vacuum analyze device_sessions');
  const targets = sessions.map((s) => ({ deviceId: s.device_id, sessionId: Number(s.id), redeliver: false }));
  const ids = targets.map((t) => t.deviceId);
  const claimMs: number[] = [];
  const readMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    const { claimed } = await claimPending(pool, targets, { perDevice: 200, limit: 200 * targets.length, instanceId: 'poll-experiment', backlog: false });
    claimMs.push(performance.now() - t);
    if (claimed.length > 0) throw new Error('nothing should be queued');
    t = performance.now();
    const found = await devicesWithQueued(pool, ids);
    readMs.push(performance.now() - t);
    if (found.length > 0) throw new Error('nothing should be queued');
  }
  const show = (xs: number[]) => `median ${fmt(median(xs), 1)} / p90 ${fmt(percentile([...xs].sort((a, b) => a - b), 90), 1)} ms`;
  process.stdout.write(
    `${fmt(devices)} live devices, ${fmt(sent)} sent rows, ${runs} runs each:\n` +
      `  claim for every live device (the poll before): ${show(claimMs)}\n` +
      `  which have queued rows (the poll now):         ${show(readMs)}\n`,
  );
} finally {
  await pool.end();
  await admin.query(`drop database ${name} with (force)`);
  await admin.end();
}
