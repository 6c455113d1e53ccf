/**
 * Process entry: configuration, database (embedded when no DATABASE_URL),
 * migrations, keys, then `buildApp` and listen. SIGTERM/SIGINT shut down in
 * order; a second signal or the deadline forces the exit.
 *
 * `WORKERS` > 1: this process becomes the cluster's primary (`cluster/primary.ts`),
 * which does the database, migrations and keys once and forks the workers; each
 * worker runs the single-instance path below on the primary's database.
 */
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import path from 'node:path';
import { buildApp, type App } from './app.js';
import { resolveApiCredentials } from './config/api-credentials.js';
import { loadConfig } from './config/config.js';
import { loadOrCreateDevicePublicKey } from './config/dev-keys.js';
import { runPrimary, type WorkerListening } from './cluster/primary.js';
import type { Config } from './config/config.js';
import type { EmbeddedPostgres } from './db/embedded-postgres.js';
import { migrate } from './db/migrate.js';
import { makePool, type Pool } from './db/pool.js';
import { makeLogger, prettyDestination, type Logger } from './logger.js';
import { StartupError } from './startup-error.js';

/**
 * One Ctrl-C in a terminal under `npm start` delivers SIGINT twice: from the terminal
 * (to the whole foreground process group) and from npm, which forwards it. The same
 * signal again within this window is that echo, not a second request to stop now.
 */
const SIGNAL_ECHO_MS = 1000;

/** Longest single migration statement. */
const MIGRATION_TIMEOUT_MS = 30 * 60_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    // Before the logger exists; the message names the variable.
    process.stderr.write(`configuration error: ${(err as Error).message}\n`);
    process.exit(78);
  }
  let destination;
  try {
    destination = config.logFormat === 'pretty' ? prettyDestination() : undefined;
  } catch (err) {
    process.stderr.write(`configuration error: LOG_FORMAT=pretty needs pino-pretty, a development dependency (npm install): ${(err as Error).message}\n`);
    process.exit(78);
  }
  const logger = makeLogger({ level: config.logLevel, instanceId: config.instanceId }, destination);

  if (config.workers > 1 && cluster.isPrimary) {
    runPrimary({ config, logger, prepare: () => prepareCluster(config, logger), reportStartupFailure: (err) => reportStartupFailure(logger, err) });
    return;
  }

  let embedded: EmbeddedPostgres | undefined;
  let pool: Pool | undefined;
  let app: App | undefined;
  let stopping = false;

  const stopDatabase = async () => {
    await pool?.end().catch(() => undefined);
    await embedded?.stop();
  };

  // Handlers go in before start-up begins: a signal while the embedded database is
  // starting must still stop it, or postgres outlives us and holds the data directory.
  // (Registering them later would also let embedded-postgres' import strip them.)
  let startup: Promise<void> = Promise.resolve();
  let shutdown: Promise<void> | undefined;
  let firstSignal: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shutdown && firstSignal?.signal === signal && Date.now() - firstSignal.at < SIGNAL_ECHO_MS) return;
    if (shutdown) {
      logger.warn({ signal }, 'server: second signal, exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'server: shutting down');
    firstSignal = { signal, at: Date.now() };
    stopping = true;
    const deadline = setTimeout(() => {
      logger.error('server: shutdown deadline passed, exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    shutdown = startup
      .then(() => app?.close())
      .then(stopDatabase)
      .then(
        () => {
          logger.info('server: stopped');
          process.exit(0);
        },
        (err) => {
          logger.error({ err }, 'server: shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  startup = (async () => {
    try {
      if (config.databaseUrl === undefined) embedded = await startEmbedded(config, logger);
      const databaseUrl = config.databaseUrl ?? embedded!.url;
      pool = makePool(
        {
          connectionString: databaseUrl,
          ssl: config.databaseSsl,
          max: config.databasePoolSize,
          applicationName: `iot-websocket-server ${config.instanceId}`,
          timeoutMs: config.databaseTimeoutMs,
        },
        logger,
      );
      if (stopping) return;
      // A worker finds them applied by its primary; running them anyway costs a lookup each and is safe (advisory lock).
      await runMigrations(config, databaseUrl, logger);
      if (stopping) return;
      const devicePublicKey = devicePublicKeyOf(config, logger);
      const credentials = resolveApiCredentials(config, logger);
      app = buildApp({ config, logger, pool, databaseUrl, devicePublicKey, credentials, clusterWorker: cluster.isWorker });
      const port = await app.listen().catch((err: unknown) => {
        throw explainListen(err, config.port, config.host);
      });
      logger.info({ port, embeddedDatabase: embedded !== undefined }, 'server: listening');
      if (cluster.isWorker) process.send?.({ type: 'iotws:listening', port } satisfies WorkerListening);
    } catch (err) {
      reportStartupFailure(logger, err);
      // listen() may fail after background work started (it holds pool clients, so
      // pool.end() alone would wait for ever): stop the app first, within the deadline.
      process.exitCode = 1;
      setTimeout(() => process.exit(1), config.shutdownTimeoutMs).unref();
      await app?.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'server: could not stop after failed start-up'));
      await stopDatabase();
      process.exit(1);
    }
  })();
  await startup;
}

function reportStartupFailure(logger: Logger, err: unknown): void {
  const hint = err instanceof StartupError ? err.hint : hintFor(err);
  // The cause in the message itself, at fatal level: the one line an operator reads.
  logger.fatal({ err, ...(hint ? { hint } : {}) }, `server: start-up failed: ${(err as Error)?.message ?? String(err)}${hint ? ` (${hint})` : ''}`);
}

async function startEmbedded(config: Config, logger: Logger): Promise<EmbeddedPostgres> {
  // Loaded only here: embedded-postgres is a development dependency, absent from a production install.
  const { startEmbeddedPostgres } = await import('./db/embedded-postgres.js');
  return startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), persistent: true, logger });
}

async function runMigrations(config: Config, databaseUrl: string, logger: Logger): Promise<void> {
  // Migrations on a connection of their own: an index build on a big table outlasts DATABASE_TIMEOUT_MS.
  const migrationPool = makePool(
    { connectionString: databaseUrl, ssl: config.databaseSsl, max: 1, timeoutMs: config.databaseTimeoutMs, queryTimeoutMs: MIGRATION_TIMEOUT_MS },
    logger,
  );
  await migrate(migrationPool, logger).finally(() => migrationPool.end());
}

function devicePublicKeyOf(config: Config, logger: Logger): string {
  return checkedPublicKey(() => loadOrCreateDevicePublicKey(config, logger), config.devicePublicKeyPem ? 'websocket-ups devicePublicKey' : config.devicePublicKeyPath);
}

/**
 * The cluster primary's one-time work: the embedded database (its URL goes to every worker),
 * migrations, and the development key pair and API credentials, generated here once rather
 * than by workers racing to write the same files.
 */
async function prepareCluster(config: Config, logger: Logger) {
  const embedded = config.databaseUrl === undefined ? await startEmbedded(config, logger) : undefined;
  try {
    await runMigrations(config, config.databaseUrl ?? embedded!.url, logger);
    devicePublicKeyOf(config, logger);
    resolveApiCredentials(config, logger);
  } catch (err) {
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
  return { databaseUrl: embedded?.url, stop: async () => embedded?.stop() };
}

/** The key, checked to be a public key here, so that a bad file fails start-up with its name rather than deep in the gateway. */
function checkedPublicKey(load: () => string, source: string): string {
  let pem: string;
  try {
    pem = load();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === undefined) throw err; // a ConfigError names its variable already
    throw new StartupError(`the device-token public key ${source} cannot be read: ${(err as Error).message}`, 'check DEVICE_PUBLIC_KEY_PATH and the file\'s permissions', {
      cause: err,
    });
  }
  try {
    crypto.createPublicKey(pem);
  } catch (err) {
    throw new StartupError(
      `the device-token public key ${source} is not a PEM public key: ${(err as Error).message}`,
      'give a PEM public key (-----BEGIN PUBLIC KEY-----, e.g. openssl pkey -in private.pem -pubout -out public.pem); outside production, remove the file to generate a development pair',
      { cause: err },
    );
  }
  return pem;
}

function explainListen(err: unknown, port: number, host: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new StartupError(`port ${port} on ${host} is already in use (EADDRINUSE)`, `another process listens there (another npm start?): stop it, or set PORT to a free port`, { cause: err });
  }
  if (code === 'EACCES') {
    return new StartupError(`not allowed to listen on port ${port} (EACCES)`, 'ports below 1024 need privileges: set PORT=5000 or another port above 1023', { cause: err });
  }
  return err;
}

/** Hints for the database failures a first start meets; the message already says what happened. */
function hintFor(err: unknown): string | undefined {
  const code = (err as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH') {
    return 'is PostgreSQL running and reachable at the host and port of DATABASE_URL (or the bound service)?';
  }
  if (code === '28P01' || code === '28000') return 'the database refused the user or password of DATABASE_URL (or the bound service)';
  if (code === '3D000') return 'the database named in DATABASE_URL does not exist: create it (createdb) or fix the URL';
  return undefined;
}

void main();
