/**
 * Builds the server from its parts. Takes what main (or a test) created, returns
 * `{ server, listen, close }`; owns nothing it was given (the pool is closed by
 * whoever created it).
 *
 * Wiring: the gateway reports device events to the dispatcher (delivery) and the
 * ack handler; the submitter (REST, DSS) nudges the dispatcher for local devices
 * and NOTIFYs the others; the LISTEN connection turns other instances' NOTIFYs
 * into nudges and session takeovers. Every part that makes an actuation transition
 * reports it, once committed, to the lifecycle (src/actuations/lifecycle.ts), which the
 * metrics (and any other listener) subscribe to.
 *
 * Shutdown order: refuse new HTTP requests and upgrades (503), close device
 * sockets with 1001 and their session rows, UNLISTEN, let in-flight claims,
 * submissions and acks finish, stop the sweeper and the liveness heartbeat,
 * close the HTTP server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { makeAckHandler } from './actuations/acks.js';
import { makeDispatcher } from './actuations/dispatcher.js';
import { ACTUATION_READY_CHANNEL } from './actuations/submit-sql.js';
import { makeSubmitter } from './actuations/submitter.js';
import { startDeadlineSweeper } from './actuations/sweeper.js';
import { makeLifecycle, type Lifecycle } from './actuations/lifecycle.js';
import type { ApiCredentials } from './config/api-credentials.js';
import type { Config } from './config/config.js';
import { startNotificationListener, type NotificationListener } from './db/notification-listener.js';
import { startRetention } from './db/retention.js';
import { makeDss } from './dss/dss.js';
import type { FrameKind } from './dss/stream-client.js';
import type { Pool } from './db/pool.js';
import { makeDeviceTokenChecker } from './gateway/device-token.js';
import { makeGateway, type Gateway } from './gateway/gateway.js';
import { makeCommitProbe, startInstanceLiveness, type InstanceLiveness } from './gateway/instance-liveness.js';
import { SESSION_REPLACED_CHANNEL } from './gateway/sessions-sql.js';
import { makeHttpApi } from './http/api.js';
import { metricsRoutes } from './http/routes/metrics.js';
import { makeKeyVerifier } from './keys/key-verifier.js';
import { requestMetrics } from './http/request-metrics.js';
import { actuationTransitionMetrics, closeCodeLabel, makeMetrics, type Metrics } from './metrics.js';
import type { Logger } from './logger.js';

export interface AppOptions {
  config: Config;
  logger: Logger;
  pool: Pool;
  /** Connection string for the dedicated LISTEN connection (the pool's database). */
  databaseUrl: string;
  devicePublicKey: string;
  credentials: ApiCredentials;
}

export interface App {
  server: http.Server;
  gateway: Gateway;
  metrics: Metrics;
  /** One typed event per committed actuation transition: `app.lifecycle.subscribe(listener)`. */
  lifecycle: Lifecycle;
  /** Starts background work and listens; resolves with the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  close(): Promise<void>;
}

const MAX_BULK_BODY_BYTES = 2 * 1024 * 1024;
const FRAME_KINDS: FrameKind[] = ['event', 'heartbeat', 'error'];
/** Retention: a pass a minute; 2,000 rows a batch (~0.1-0.3 s with 300,000 rows on a loaded 2-core machine), then a pause at least as long, at least 100 ms. */
const RETENTION_PACE = { intervalMs: 60_000, batchSize: 2_000, pauseMs: 100 };

export function buildApp(options: AppOptions): App {
  const { config, logger, pool, devicePublicKey, credentials } = options;
  let shuttingDown = false;

  // Gauges are read at scrape time, after everything below exists.
  const metrics = makeMetrics({ pool, connectedDevices: () => gateway.connectedDeviceCount() });
  // Every part that makes a transition reports it here once committed; listeners subscribe in one line each.
  const lifecycle = makeLifecycle(logger);
  lifecycle.subscribe(actuationTransitionMetrics(metrics));

  const dispatcher = makeDispatcher({
    pool,
    logger,
    instanceId: config.instanceId,
    backlogRate: config.backlogRate,
    redeliverUnacked: config.redeliverUnacked,
    pollIntervalMs: config.dispatchPollMs,
    maxBufferedBytes: config.deviceMaxBufferedBytes,
    databaseTimeoutMs: config.databaseTimeoutMs,
    lifecycle,
  });
  const acks = makeAckHandler({
    pool,
    logger,
    lifecycle,
    onDeferred: (what) => metrics.acks.inc({ outcome: what }),
    onFirstRecorded: (connection) => dispatcher.deviceAcked(connection),
    onAck: ({ outcome }) => metrics.acks.inc({ outcome }),
  });
  const gateway = makeGateway({
    config,
    logger,
    pool,
    checkDeviceToken: makeDeviceTokenChecker(devicePublicKey, config.deviceTokenAlgorithms, { requireExp: config.deviceTokenRequireExp, maxAgeSeconds: config.deviceTokenMaxAgeSeconds }),
    events: {
      authenticated(connection) {
        metrics.authentications.inc({ result: 'ok' });
        metrics.sessionsOpened.inc();
        dispatcher.deviceConnected(connection);
      },
      authenticationFailed: (_deviceId, reason) => metrics.authentications.inc({ result: reason }),
      disconnected(connection) {
        metrics.sessionsClosed.inc({ code: closeCodeLabel(connection.closeIntent?.code ?? 1005) });
        dispatcher.deviceDisconnected(connection);
      },
      ack: (connection, message) => acks.handle(connection, message),
    },
  });
  const submitter = makeSubmitter({
    pool,
    defaultTtlSeconds: config.actuationTtlSeconds,
    maxQueuedPerDevice: config.maxQueuedPerDevice,
    maxBatchSize: 500,
    flushTimeoutMs: config.databaseTimeoutMs,
    instanceId: config.instanceId,
    delivery: dispatcher,
    lifecycle,
  });
  const dss = makeDss({
    config,
    logger,
    pool,
    submitter,
    onFrame: (stream, kind) => metrics.dssFrames.inc({ stream, kind }),
    // A stream this instance no longer holds counts nothing here: its series go (an edited one is taken again at once).
    onStreamReleased: (stream, why) => {
      if (why !== 'edited') for (const kind of FRAME_KINDS) metrics.dssFrames.remove({ stream, kind });
    },
  });
  const keys = makeKeyVerifier({ pool, logger });
  const api = makeHttpApi({
    logger,
    pool,
    gateway,
    submitter,
    credentials,
    keys,
    maxBodyBytes: config.maxMessageBytes,
    maxBulkBodyBytes: MAX_BULK_BODY_BYTES,
    isShuttingDown: () => shuttingDown,
    routers: [dss.router],
    // /metrics checks its own credentials: the API's, or the read-only METRICS_USERNAME/METRICS_PASSWORD.
    ownAuthRouters: config.metricsPort === undefined ? [metricsRoutes(metrics.registry, [credentials, ...(config.metricsCredentials ? [config.metricsCredentials] : [])], keys)] : [],
    observe: requestMetrics(metrics),
    lifecycle,
    onDatabaseUnavailable: () => metrics.databaseErrors.inc({ operation: 'http' }),
    canCommit: makeCommitProbe({ pool, instanceId: config.instanceId }),
  });
  // With METRICS_PORT, /metrics is served there only, unauthenticated (for a scraper on a private network).
  const metricsServer = config.metricsPort === undefined ? undefined : http.createServer(express().use(metricsRoutes(metrics.registry)));

  const server = http.createServer(api);
  server.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
  // Slow or idle HTTP clients must not hold sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  function onNotification(channel: string, payload: string): void {
    try {
      const message = JSON.parse(payload) as { deviceIds?: string[]; deviceId?: string; sessionId?: number; instanceId?: string };
      if (channel === ACTUATION_READY_CHANNEL && Array.isArray(message.deviceIds)) dispatcher.nudge(message.deviceIds);
      if (channel === SESSION_REPLACED_CHANNEL && message.instanceId === config.instanceId && message.deviceId && message.sessionId) {
        gateway.endTakenOverSession(message.deviceId, message.sessionId);
      }
    } catch (err) {
      logger.warn({ err, channel }, 'listen: unreadable notification ignored');
    }
  }

  let liveness: InstanceLiveness | undefined;
  let listener: NotificationListener | undefined;
  let sweeper: { stop(): Promise<void> } | undefined;
  let retention: { stop(): Promise<void> } | undefined;
  let closePromise: Promise<void> | undefined;

  return {
    server,
    gateway,
    metrics,
    lifecycle,
    async listen(port = config.port, host = config.host) {
      liveness = await startInstanceLiveness({
        pool,
        logger,
        instanceId: config.instanceId,
        intervalMs: config.instanceHeartbeatMs,
        // Their rows are closed: a socket whose session is closed would never be sent anything.
        onSessionsLost: (lost) => lost.forEach((s) => gateway.endTakenOverSession(s.deviceId, s.sessionId)),
      });
      listener = await startNotificationListener({
        connectionString: options.databaseUrl,
        ssl: config.databaseSsl,
        channels: [ACTUATION_READY_CHANNEL, SESSION_REPLACED_CHANNEL],
        logger,
        onNotification,
        timeoutMs: config.databaseTimeoutMs,
        // Anything NOTIFYed while we were not listening is still in the table: re-check.
        onConnected: () => dispatcher.nudgeAll(),
      });
      sweeper = startDeadlineSweeper({
        pool,
        logger,
        intervalMs: config.sweepIntervalMs,
        lifecycle,
      });
      retention = startRetention({
        pool,
        logger,
        retentionDays: config.retentionDays,
        ...RETENTION_PACE,
        onDeleted: (table, rows) => metrics.retentionDeleted.inc({ table }, rows),
      });
      if (metricsServer) await new Promise<void>((resolve) => metricsServer.listen(config.metricsPort, host, resolve));
      dss.start();
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
        await listener?.stop();
        // DSS before the submitter drains: a rule in flight still submits, then the stream's position is flushed.
        await dss.stop();
        await Promise.all([dispatcher.close(), submitter.drain(), acks.drain()]);
        await sweeper?.stop();
        await retention?.stop();
        await liveness?.stop();
        metricsServer?.close();
        server.closeIdleConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closePromise;
    },
  };
}
