/**
 * Process entry: configuration, database (embedded when no DATABASE_URL),
 * migrations, keys, then `buildApp` and listen. SIGTERM/SIGINT shut down in
 * order; a second signal or the deadline forces the exit.
 */
import path from 'node:path';
import { buildApp, type App } from './app.js';
import { resolveApiCredentials } from './config/api-credentials.js';
import { loadConfig } from './config/config.js';
import { loadOrCreateDevicePublicKey } from './config/dev-keys.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded-postgres.js';
import { migrate } from './db/migrate.js';
import { makePool, type Pool } from './db/pool.js';
import { makeLogger } from './logger.js';

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
  const logger = makeLogger({ level: config.logLevel, instanceId: config.instanceId });

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
  const onSignal = (signal: NodeJS.Signals) => {
    if (shutdown) {
      logger.warn({ signal }, 'server: second signal, exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'server: shutting down');
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
      if (config.databaseUrl === undefined) {
        embedded = await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), persistent: true, logger });
      }
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
      // Migrations on a connection of their own: an index build on a big table outlasts DATABASE_TIMEOUT_MS.
      const migrationPool = makePool(
        { connectionString: databaseUrl, ssl: config.databaseSsl, max: 1, timeoutMs: config.databaseTimeoutMs, queryTimeoutMs: MIGRATION_TIMEOUT_MS },
        logger,
      );
      await migrate(migrationPool, logger).finally(() => migrationPool.end());
      if (stopping) return;
      const devicePublicKey = loadOrCreateDevicePublicKey(config, logger);
      const credentials = resolveApiCredentials(config, logger);
      app = buildApp({ config, logger, pool, databaseUrl, devicePublicKey, credentials });
      const port = await app.listen();
      logger.info({ port, embeddedDatabase: embedded !== undefined }, 'server: listening');
    } catch (err) {
      logger.fatal({ err }, 'server: start-up failed');
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

void main();
