/**
 * Builds the server from its parts. Takes what main (or a test) created, returns
 * `{ server, listen, close }`; owns nothing it was given (the pool is closed by
 * whoever created it).
 *
 * Shutdown order: refuse new HTTP requests and upgrades (503), close device
 * sockets with 1001 and their session rows, stop the liveness heartbeat, close
 * the HTTP server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config/config.js';
import type { ApiCredentials } from './config/api-credentials.js';
import type { Pool } from './db/pool.js';
import { makeDeviceTokenVerifier } from './gateway/device-token.js';
import { makeGateway, type Gateway } from './gateway/gateway.js';
import { startInstanceLiveness } from './gateway/instance-liveness.js';
import { makeHttpApi } from './http/api.js';
import type { Logger } from './logger.js';

export interface AppOptions {
  config: Config;
  logger: Logger;
  pool: Pool;
  devicePublicKey: string;
  credentials: ApiCredentials;
}

export interface App {
  server: http.Server;
  gateway: Gateway;
  /** Starts background work and listens; resolves with the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  close(): Promise<void>;
}

export function buildApp(options: AppOptions): App {
  const { config, logger, pool, devicePublicKey, credentials } = options;
  let shuttingDown = false;

  const gateway = makeGateway({
    config,
    logger,
    pool,
    verifyDeviceToken: makeDeviceTokenVerifier(devicePublicKey, config.deviceTokenAlgorithms),
  });
  const api = makeHttpApi({
    logger,
    pool,
    gateway,
    credentials,
    maxBodyBytes: config.maxMessageBytes,
    isShuttingDown: () => shuttingDown,
  });

  const server = http.createServer(api);
  server.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
  // Slow or idle HTTP clients must not hold sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  let liveness: Awaited<ReturnType<typeof startInstanceLiveness>> | undefined;
  let closePromise: Promise<void> | undefined;

  return {
    server,
    gateway,
    async listen(port = config.port, host = config.host) {
      liveness = await startInstanceLiveness({ pool, logger, instanceId: config.instanceId, intervalMs: config.instanceHeartbeatMs });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    close() {
      closePromise ??= (async () => {
        shuttingDown = true;
        await gateway.close();
        await liveness?.stop();
        server.closeIdleConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closePromise;
    },
  };
}
