/**
 * Process entry: configuration, database (embedded when no DATABASE_URL),
 * migrations, keys, then `buildApp` and listen. SIGTERM/SIGINT shut down in
 * order; a second signal or the deadline forces the exit.
 */
import path from 'node:path';
import { buildApp } from './app.js';
import { resolveApiCredentials } from './config/api-credentials.js';
import { loadConfig } from './config/config.js';
import { loadOrCreateDevicePublicKey } from './config/dev-keys.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded-postgres.js';
import { migrate } from './db/migrate.js';
import { makePool } from './db/pool.js';
import { makeLogger } from './logger.js';

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
  if (config.databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), persistent: true, logger });
  }
  const databaseUrl = config.databaseUrl ?? embedded!.url;
  const pool = makePool(
    { connectionString: databaseUrl, ssl: config.databaseSsl, max: config.databasePoolSize, applicationName: `iot-websocket-server ${config.instanceId}` },
    logger,
  );

  const stopDatabase = async () => {
    await pool.end().catch(() => undefined);
    await embedded?.stop();
  };

  let app;
  try {
    await migrate(pool, logger);
    const devicePublicKey = loadOrCreateDevicePublicKey(config, logger);
    const credentials = resolveApiCredentials(config, logger);
    app = buildApp({ config, logger, pool, databaseUrl, devicePublicKey, credentials });
    const port = await app.listen();
    logger.info({ port, embeddedDatabase: embedded !== undefined }, 'server: listening');
  } catch (err) {
    logger.fatal({ err }, 'server: start-up failed');
    await stopDatabase();
    process.exit(1);
  }

  let shutdown: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shutdown) {
      logger.warn({ signal }, 'server: second signal, exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'server: shutting down');
    const deadline = setTimeout(() => {
      logger.error('server: shutdown deadline passed, exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    shutdown = app
      .close()
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
}

void main();
