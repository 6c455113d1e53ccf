/**
 * Experiment (not wired into `npm run bench`): PostgreSQL's CPU per device for the batched
 * session statement (`openSessions`, src/gateway/sessions-sql.ts) by batch size, sent as
 * node-postgres sends it (unnamed: parsed and planned at every call) and as a named prepared
 * statement (`namedStatement`: planned once per connection, then PostgreSQL's plan cache
 * picks a custom or the generic plan).
 *
 *   DATABASE_URL=postgres://… npx tsx bench/experiments/session-batch.ts [--sizes 1,16,32,64,128,256] [--devices 3000] [--rounds 2]
 *
 * A scratch database is created, migrated, used and dropped. Each (size, kind) opens
 * sessions for `--devices` new devices in batches of `size`, one statement after the other
 * on one connection; the figure is that backend's CPU (/proc/<pid>/schedstat, so the
 * database must run on this machine) per device, and the wall time per statement. Later
 * rounds run on the rows the earlier ones left (as a server's database fills up).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { namedStatement } from '../../src/db/named-statement.js';
import { makePool } from '../../src/db/pool.js';
import { openSessions } from '../../src/gateway/sessions-sql.js';
import { makeLogger } from '../../src/logger.js';
import { int } from '../lib/cli.js';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '1,16,32,64,128,256' }, devices: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '2' } },
});
const sizes = values.sizes.split(',').map((s) => int('sizes', s, 1, 500));
const devices = int('devices', values.devices, 1, 1_000_000);
const rounds = int('rounds', values.rounds, 1, 20);
const adminUrl = process.env.DATABASE_URL;
if (!adminUrl) throw new Error('set DATABASE_URL (a server on this machine where this may create and drop a scratch database)');

const name = `iotws_sessions_${crypto.randomBytes(4).toString('hex')}`;
const admin = new pg.Client(adminUrl);
await admin.connect();
await admin.query(`create database ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const logger = makeLogger({ level: 'silent' });
const pool = makePool({ connectionString: url.toString(), max: 1 }, logger);
try {
  await migrate(pool, logger);
  const client = await pool.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    const backendCpuNs = () => Number(fs.readFileSync(`/proc/${rows[0]!.pid}/schedstat`, 'utf8').split(' ')[0]);
    const kinds = {
      unnamed: { query: (text: string, params: unknown[]) => client.query(text, params) },
      named: { query: (text: string, params: unknown[]) => client.query({ ...namedStatement('session_batch_experiment', text), values: params }) },
    };
    let next = 0;
    for (let round = 1; round <= rounds; round++) {
      for (const size of sizes) {
        for (const [kind, db] of Object.entries(kinds)) {
          const batches = Math.max(5, Math.ceil(devices / size));
          const t0 = performance.now();
          const cpu0 = backendCpuNs();
          for (let b = 0; b < batches; b++) {
            const items = Array.from({ length: size }, () => ({ deviceId: `exp-${next++}`, accountId: null, remoteAddress: '127.0.0.1' }));
            await openSessions(db as unknown as pg.PoolClient, 'session-batch-experiment', items);
          }
          const n = batches * size;
          console.log(
            `round ${round}  batch ${String(size).padStart(3)}  ${kind.padEnd(7)}  PostgreSQL ${((backendCpuNs() - cpu0) / 1000 / n).toFixed(1).padStart(7)} µs/device` +
              `  ${((performance.now() - t0) / batches).toFixed(2).padStart(7)} ms/statement`,
          );
        }
      }
    }
  } finally {
    client.release();
  }
} finally {
  await pool.end();
  await admin.query(`drop database ${name} with (force)`);
  await admin.end();
}
