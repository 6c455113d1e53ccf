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
 * sockets with 1001 and their session rows, UNLISTEN, release DSS streams and job leases (DSS streams and job releases first, as they submit), abort
 * webhook requests in flight (another instance sends them again) and let go of their
 * leases, let in-flight claims, submissions and acks finish, stop the sweeper and the liveness heartbeat,
 * close the HTTP server, then write what the audit log still holds (one bounded try).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
import { makeEventFeed } from './events/feed.js';
import { startEventRetention } from './events/retention.js';
import { startEventSequencer, type EventSequencer } from './events/sequencer.js';
import { EVENTS_CHANNEL } from './events/types.js';
import { makeJobs } from './jobs/jobs.js';
import type { FrameKind } from './dss/stream-client.js';
import type { Pool } from './db/pool.js';
import { makeDeviceTokenChecker } from './gateway/device-token.js';
import { makeGateway, type Gateway } from './gateway/gateway.js';
import { makeCommitProbe, startInstanceLiveness, type InstanceLiveness } from './gateway/instance-liveness.js';
import { SESSION_REPLACED_CHANNEL } from './gateway/sessions-sql.js';
import { makeHttpApi } from './http/api.js';
import { makeAuditLog } from './audit/audit-log.js';
import { TOKENS_REVOKED_CHANNEL } from './gateway/revocations-sql.js';
import { makeTokenRevocations } from './gateway/token-revocations.js';
import { makeRateLimiter } from './http/rate-limit.js';
import { metricsOnlyServer, metricsRoutes } from './http/routes/metrics.js';
import { clusterMetricsSource } from './cluster/cluster-metrics.js';
import { makeKeyVerifier } from './keys/key-verifier.js';
import { requestMetrics } from './http/request-metrics.js';
import { actuationTransitionMetrics, closeCodeLabel, intervalEvaluationMetrics, makeMetrics, type Metrics } from './metrics.js';
import type { Logger } from './logger.js';
import { makeWebhooks } from './webhooks/webhooks.js';

/** Webhooks: the safety-net poll for missed NOTIFYs, retries due on other instances and leases that ran out. */
const WEBHOOK_POLL_MS = 1_000;

export interface AppOptions {
  config: Config;
  logger: Logger;
  pool: Pool;
  /** Connection string for the dedicated LISTEN connection (the pool's database). */
  databaseUrl: string;
  devicePublicKey: string;
  credentials: ApiCredentials;
  /** A `node:cluster` worker (WORKERS > 1): `/metrics` answers the sum over all workers (`cluster/cluster-metrics.ts`). */
  clusterWorker?: boolean;
}

export interface App {
  server: http.Server;
  /** The REST routes served (`method path`, as in ROUTES), for the OpenAPI test. */
  httpRoutes: readonly string[];
  gateway: Gateway;
  metrics: Metrics;
  /** One typed event per committed actuation transition: `app.lifecycle.subscribe(listener)`. */
  lifecycle: Lifecycle;
  /** Starts background work and listens; resolves with the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  close(): Promise<void>;
}

const MAX_BULK_BODY_BYTES = 2 * 1024 * 1024;
/** Jobs and schedules list up to 100,000 device ids (of up to 80 characters, with JSON's quotes and commas). */
const MAX_JOB_BODY_BYTES = 8 * 1024 * 1024;
const FRAME_KINDS: FrameKind[] = ['event', 'heartbeat', 'error'];
/** Retention: a pass a minute; 2,000 rows a batch (~0.1-0.3 s with 300,000 rows on a loaded 2-core machine), then a pause at least as long, at least 100 ms. */
const RETENTION_PACE = { intervalMs: 60_000, batchSize: 2_000, pauseMs: 100 };
/** Change feed: events per sequencing pass; a catching-up subscriber whose socket takes nothing this long is dropped; re-read without a NOTIFY this often. */
const EVENTS_SEQUENCER_BATCH = 2_000;
const EVENTS_SUBSCRIBER_STALL_MS = 10_000;
const EVENTS_POLL_MS = 1_000;

export function buildApp(options: AppOptions): App {
  const { config, logger, pool, devicePublicKey, credentials } = options;
  let shuttingDown = false;

  // Gauges are read at scrape time, after everything below exists.
  const metrics = makeMetrics({ pool, connectedDevices: () => gateway.connectedDeviceCount(), eventSubscribers: () => feed.subscriberCount() });
  const metricsSource = options.clusterWorker ? clusterMetricsSource(metrics.registry) : metrics.registry;
  const feed = makeEventFeed({
    pool,
    logger,
    maxSubscribers: config.eventsMaxSubscribers,
    subscriberBufferBytes: config.eventsSubscriberBufferBytes,
    heartbeatMs: config.eventsHeartbeatMs,
    stallMs: EVENTS_SUBSCRIBER_STALL_MS,
    pollMs: EVENTS_POLL_MS,
    onSubscriberClosed: (reason) => metrics.eventSubscribersClosed.inc({ reason }),
  });
  // Every part that makes a transition reports it here once committed; listeners subscribe in one line each.
  const lifecycle = makeLifecycle(logger);
  lifecycle.subscribe(actuationTransitionMetrics(metrics));
  // A committed transition wrote its event: the sequencer numbers it soon, not at its next poll.
  lifecycle.subscribe(() => sequencer?.nudge());

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
  // Device token revocations: checked at connect (in memory), and closing live connections when one arrives.
  const revocations = makeTokenRevocations({ pool, logger, onRevoked: (revocation) => gateway.closeRevoked(revocation.deviceId) });
  const gateway = makeGateway({
    config,
    logger,
    pool,
    revocations,
    checkDeviceToken: makeDeviceTokenChecker(devicePublicKey, config.deviceTokenAlgorithms, { requireExp: config.deviceTokenRequireExp, maxAgeSeconds: config.deviceTokenMaxAgeSeconds }),
    events: {
      authenticated(connection, opened) {
        metrics.authentications.inc({ result: 'ok' });
        metrics.sessionsOpened.inc();
        dispatcher.deviceConnected(connection, opened);
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
    onIntervalEvaluated: intervalEvaluationMetrics(metrics),
  });
  const jobs = makeJobs({ config, logger, pool, submitter, caller: credentials.username, lifecycle });
  const webhooks = makeWebhooks({
    pool,
    logger,
    instanceId: config.instanceId,
    registry: metrics.registry,
    secretKey: config.webhookSecretKey,
    settings: {
      timeoutMs: config.webhookTimeoutMs,
      maxAgeMs: config.webhookMaxAgeHours * 3_600_000,
      retryMinMs: config.webhookRetryMinMs,
      retryMaxMs: config.webhookRetryMaxMs,
      allowPrivate: config.webhookAllowPrivate,
      maxConcurrency: config.webhookMaxConcurrency,
      pollIntervalMs: WEBHOOK_POLL_MS,
      retentionDays: config.retentionDays,
      databaseTimeoutMs: config.databaseTimeoutMs,
      gatherMs: config.webhookGatherMs,
    },
    // Its own pool: up to two statements per endpoint held (its drain's, its recorder's), and a claim.
    thread: config.webhookSenderThread
      ? {
          pool: {
            connectionString: options.databaseUrl,
            ssl: config.databaseSsl,
            max: Math.min(config.databasePoolSize, 2 * config.webhookMaxConcurrency + 1),
            applicationName: `iot-websocket-server ${config.instanceId} webhooks`,
            timeoutMs: config.databaseTimeoutMs,
          },
          logLevel: config.logLevel,
          nice: config.webhookSenderNice,
        }
      : undefined,
  });
  const keys = makeKeyVerifier({ pool, logger });
  // Each instance enforces its share of a key's rate limit: the live instances are counted on every heartbeat.
  let liveInstances = 1;
  const rateLimiter = makeRateLimiter({ liveInstances: () => liveInstances });
  const auditLog = makeAuditLog({ pool, logger, flushTimeoutMs: config.databaseTimeoutMs, onDropped: (reason, count) => metrics.auditDropped.inc({ reason }, count) });
  const api = makeHttpApi({
    logger,
    pool,
    gateway,
    submitter,
    feed,
    credentials,
    keys,
    maxBodyBytes: config.maxMessageBytes,
    maxBulkBodyBytes: MAX_BULK_BODY_BYTES,
    isShuttingDown: () => shuttingDown,
    maxJobBodyBytes: MAX_JOB_BODY_BYTES,
    routes: [dss.routes, ...jobs.routes, webhooks.routes],
    // /metrics checks its own credentials: the API's, or the read-only METRICS_USERNAME/METRICS_PASSWORD.
    ownAuthRoutes: config.metricsPort === undefined ? [metricsRoutes(metricsSource, [credentials, ...(config.metricsCredentials ? [config.metricsCredentials] : [])], keys)] : [],
    observe: requestMetrics(metrics),
    lifecycle,
    onDatabaseUnavailable: () => metrics.databaseErrors.inc({ operation: 'http' }),
    canCommit: makeCommitProbe({ pool, instanceId: config.instanceId }),
    auditLog,
    rateLimiter,
    defaultRateLimit: config.apiKeyRateLimit,
    onDeviceTokensRevoked: (revocation) => revocations.add(revocation),
  });
  // With METRICS_PORT, /metrics is served there only, unauthenticated (for a scraper on a private network).
  const metricsApp = config.metricsPort === undefined ? undefined : metricsOnlyServer(metricsSource);
  const metricsServer = metricsApp?.server;

  const server = api.fastify.server;
  server.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
  // Slow or idle HTTP clients must not hold sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  function onNotification(channel: string, payload: string): void {
    if (channel === EVENTS_CHANNEL) {
      const lastId = Number(payload);
      if (Number.isSafeInteger(lastId)) feed.notified(lastId);
      webhooks.nudge();
      return;
    }
    try {
      if (channel === TOKENS_REVOKED_CHANNEL) return revocations.notified(payload);
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
  let sequencer: EventSequencer | undefined;
  let eventRetention: { stop(): Promise<void> } | undefined;
  let closePromise: Promise<void> | undefined;

  return {
    server,
    httpRoutes: api.routes,
    gateway,
    metrics,
    lifecycle,
    async listen(port = config.port, host = config.host) {
      // fastify adds the routes while it boots, and answers only after `ready()`: first, so that
      // nothing of it stands between this instance registering (liveness) and listening.
      await api.fastify.ready();
      await metricsApp?.ready();
      // Before the first device can connect: revocations made before this start hold.
      await revocations.load();
      liveness = await startInstanceLiveness({
        pool,
        logger,
        instanceId: config.instanceId,
        intervalMs: config.instanceHeartbeatMs,
        // Their rows are closed: a socket whose session is closed would never be sent anything.
        onSessionsLost: (lost) => lost.forEach((s) => gateway.endTakenOverSession(s.deviceId, s.sessionId)),
        onLiveInstances: (count) => (liveInstances = count),
        // Revocations whose NOTIFY was missed, and connections that authenticated while one was committed.
        onBeat: async () => {
          await revocations.refresh();
          gateway.closeRevoked();
        },
      });
      await feed.start();
      listener = await startNotificationListener({
        connectionString: options.databaseUrl,
        ssl: config.databaseSsl,
        channels: [ACTUATION_READY_CHANNEL, SESSION_REPLACED_CHANNEL, EVENTS_CHANNEL, TOKENS_REVOKED_CHANNEL],
        logger,
        onNotification,
        timeoutMs: config.databaseTimeoutMs,
        // Anything NOTIFYed while we were not listening is still in the table: re-check.
        onConnected: () => {
          dispatcher.nudgeAll();
          feed.reread();
          webhooks.nudge();
          revocations.load().then(
            () => gateway.closeRevoked(),
            (err: unknown) => logger.warn({ err }, 'device tokens: revocations not reloaded after LISTEN reconnected; the next heartbeat reads them'),
          );
        },
      });
      sequencer = startEventSequencer({
        pool,
        logger,
        intervalMs: config.eventsSequencerIntervalMs,
        minGapMs: config.eventsSequencerMinGapMs,
        batchSize: EVENTS_SEQUENCER_BATCH,
        // With subscribers here, the pass returns its events: they are fanned out without a read.
        read: () => feed.subscriberCount() > 0,
        onPass(pass) {
          if (pass.sequenced === 0) return;
          // Committed: this instance's subscribers need not wait for the NOTIFY's round trip.
          feed.passed(pass);
          metrics.eventsSequenced.inc(pass.sequenced);
          if (pass.maxLagSeconds !== null) metrics.eventsSequencerLagSeconds.observe(pass.maxLagSeconds);
        },
      });
      eventRetention = startEventRetention({
        pool,
        logger,
        retentionHours: config.eventsRetentionHours,
        ...RETENTION_PACE,
        onDeleted: (rows) => metrics.retentionDeleted.inc({ table: 'events' }, rows),
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
        eventLogHours: config.dssEventLogHours,
        jobsRetentionDays: config.jobsRetentionDays,
        ...RETENTION_PACE,
        onDeleted: (table, rows) => metrics.retentionDeleted.inc({ table }, rows),
      });
      if (metricsServer) await new Promise<void>((resolve) => metricsServer.listen(config.metricsPort, host, resolve));
      dss.start();
      jobs.start();
      webhooks.start();
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
        // Jobs too: a page in flight still submits, then the leases are let go for another instance.
        await jobs.stop();
        // Requests in flight are aborted, not recorded: another instance sends them again.
        await webhooks.stop();
        await Promise.all([dispatcher.close(), submitter.drain(), acks.drain()]);
        await sweeper?.stop();
        await retention?.stop();
        await eventRetention?.stop();
        // Last of the writers: the transitions of the shutdown (sessions closed) are numbered too.
        await sequencer?.stop();
        feed.close();
        await liveness?.stop();
        metricsServer?.close();
        server.closeIdleConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        // After the last request: its entry is in the log too (one last bounded attempt).
        await auditLog.close();
      })();
      return closePromise;
    },
  };
}
