/**
 * The one place that reads the environment. Everything else receives a frozen
 * `Config` as an argument.
 *
 * Precedence: explicit environment variable > Cloud Foundry (`VCAP_SERVICES`,
 * `CF_INSTANCE_*`) > default. Bad values fail at start-up with a `ConfigError`
 * that names the variable.
 */
import os from 'node:os';
import path from 'node:path';
import { CREDENTIALS_SERVICE_NAME, VcapError, parseVcapServices, type DatabaseSsl, type VcapServices } from './vcap.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${variable}: ${message}`, options);
  }
}

/** JWT algorithms a device token may be signed with. Symmetric (HS*) and `none` are never allowed: the key is public. */
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
export type DeviceTokenAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly nodeEnv: string;
  readonly isProduction: boolean;
  /** HTTP and WebSocket port. (Default: 5000; `PORT`, which Cloud Foundry sets.) */
  readonly port: number;
  readonly host: string;
  /** Where the embedded database, generated API credentials and similar state live. (Default: ./data) */
  readonly dataDir: string;
  /** PostgreSQL connection string; `undefined` means: start the embedded PostgreSQL under `dataDir/postgres`. */
  readonly databaseUrl: string | undefined;
  /** TLS for the database connection, as the bound Cloud Foundry service asks for it. */
  readonly databaseSsl: DatabaseSsl;
  readonly databasePoolSize: number;
  /** Bound on every wait for the database: pool checkout, each query (client and server side), each batch flush. (Default: 5 000) */
  readonly databaseTimeoutMs: number;
  readonly devicePublicKeyPath: string;
  /**
   * The device-token public key in PEM from the `websocket-ups` service (`devicePublicKey`); when set,
   * `devicePublicKeyPath` is not read. `DEVICE_PUBLIC_KEY_PATH` in the environment wins over it.
   */
  readonly devicePublicKeyPem?: string;
  readonly deviceTokenAlgorithms: readonly DeviceTokenAlgorithm[];
  /**
   * Refuse device tokens without `exp`. OISP's device tokens carry `exp`, so the default keeps
   * the original agents working; `false` admits tokens that never expire. (Default: true)
   */
  readonly deviceTokenRequireExp: boolean;
  /** When set, a device token whose `iat` is older than this many seconds, or that has no `iat`, is refused. (Default: unset) */
  readonly deviceTokenMaxAgeSeconds: number | undefined;
  /** REST API credentials; `undefined` outside production means: generate and keep them in `dataDir`. */
  readonly apiCredentials: { readonly username: string; readonly password: string } | undefined;
  /**
   * Names this process in the database and in logs; unique among running instances.
   * (Default: `<CF_INSTANCE_INDEX>-<CF_INSTANCE_GUID>` on Cloud Foundry, else `<hostname>-<pid>`)
   */
  readonly instanceId: string;
  /**
   * Worker processes on this machine (`WORKERS`: a number, or `auto` for one per core). 1 runs
   * no cluster at all; above 1 a primary supervises that many workers on one port. (Default: 1)
   */
  readonly workers: number;
  /** Set by the primary in each worker it forks (`WORKER_INDEX`, 0-based); the instance id ends in `-w<index>`. */
  readonly workerIndex: number | undefined;
  /** Worker restarts (all workers together) allowed within a minute; a death beyond them makes the primary stop the rest and exit 1. (Default: 10) */
  readonly workerMaxRestartsPerMinute: number;
  readonly logLevel: LogLevel;
  /** `json` (one JSON object a line, for machines) or `pretty` (coloured lines for a terminal; needs the development dependency pino-pretty). (Default: json) */
  readonly logFormat: 'json' | 'pretty';
  /** A socket that has not authenticated within this time is closed. (Default: 10 000) */
  readonly authTimeoutMs: number;
  /** Largest WebSocket message or REST body accepted. (Default: 65 536) */
  readonly maxMessageBytes: number;
  /** WebSocket ping interval; a peer that misses one pong is terminated. (Default: 30 000) */
  readonly heartbeatIntervalMs: number;
  /** How long graceful shutdown may take before the process exits anyway. (Default: 10 000) */
  readonly shutdownTimeoutMs: number;
  /** How often this instance records that it is alive; three missed beats make it dead to the others. (Default: 5 000) */
  readonly instanceHeartbeatMs: number;
  /** Default time to live of an actuation, in seconds; 0 = never expires. (Default: 86 400) */
  readonly actuationTtlSeconds: number;
  /** Queued actuations a device may have before submissions get 429. (Default: 1 000) */
  readonly maxQueuedPerDevice: number;
  /** Re-send sent-but-unacked actuations when a device that acks reconnects. (Default: true) */
  readonly redeliverUnacked: boolean;
  /** Actuations per second this instance drains from reconnecting devices' backlogs. (Default: 500) */
  readonly backlogRate: number;
  /** How often expired and timed-out actuations are swept. (Default: 1 000) */
  readonly sweepIntervalMs: number;
  /** Safety-net poll for queued actuations of connected devices (missed NOTIFYs). (Default: 5 000) */
  readonly dispatchPollMs: number;
  /** Hold and process DSS streams on this instance (`DSS_ENABLED`); the REST routes work either way. (Default: true) */
  readonly dssEnabled: boolean;
  /** How often this instance looks for streams to take over, edited or deleted; bounds the handover time. (Default: 2 000) */
  readonly dssSupervisorIntervalMs: number;
  /** First reconnect delay of a DSS stream; doubles per failed attempt, with jitter. (Default: 500) */
  readonly dssReconnectMinMs: number;
  /** Longest reconnect delay of a DSS stream. (Default: 30 000) */
  readonly dssReconnectMaxMs: number;
  /** DSS WebSocket handshake timeout. (Default: 10 000) */
  readonly dssConnectTimeoutMs: number;
  /** Reconnect when nothing, not even a heartbeat (every 30 s from DSS), arrived for this long. (Default: 90 000) */
  readonly dssIdleTimeoutMs: number;
  /** How often a stream's position and counters are written to `dss_streams`. (Default: 1 000) */
  readonly dssFlushIntervalMs: number;
  /** Events queued behind the rules before the stream socket stops reading. (Default: 1 000) */
  readonly dssMaxQueuedEvents: number;
  /** Events of one stream whose rules may run at the same time (ordered per device regardless). (Default: 500) */
  readonly dssMaxInFlightEvents: number;
  /** Rules are reloaded this often (edits on other instances); edits here apply at once. (Default: 2 000) */
  readonly dssRulesRefreshMs: number;
  /** Release jobs and fire schedules on this instance (creating and reading them works everywhere). (Default: true) */
  readonly jobsEnabled: boolean;
  /** How often jobs to start, jobs to take over and due schedules are looked for; also a held job's progress check. (Default: 1 000) */
  readonly jobsPollMs: number;
  /** A job's lease: renewed by its releasing instance every poll; another takes the job over this long after the last renewal. (Default: 5 000) */
  readonly jobsLeaseMs: number;
  /** Days a finished job (and its target rows) is kept after it finished; deleted by the retention pass; 0 keeps every job. (Default: 30) */
  readonly jobsRetentionDays: number;
  /** Record each DSS event in the devices' last known state (and the event log) on the event's commit path (`DSS_STATE_ENABLED`). (Default: true) */
  readonly dssStateEnabled: boolean;
  /** Hours a DSS event stays in its stream's recent-event log (deleted by the retention pass); 0 keeps no log. (Default: 24) */
  readonly dssEventLogHours: number;
  /** How often each instance looks for a due interval rule. (Default: 1 000) */
  readonly dssIntervalPollMs: number;
  /**
   * Bytes queued for a device's socket (not yet taken by the kernel) above which nothing more is
   * claimed or direct-sent to it; its actuations stay `queued` until the buffer drains. (Default: 1 048 576)
   */
  readonly deviceMaxBufferedBytes: number;
  /** Messages of one socket received and not yet handled; beyond, the device is closed with 1013. (Default: 1 000) */
  readonly deviceMaxPendingMessages: number;
  /** Sustained messages per second one device may send (token bucket); beyond its burst, closed with 1013. (Default: 1 000) */
  readonly deviceMaxMessagesPerSecond: number;
  /** Messages one device may send at once above its rate (the bucket's size). (Default: 2 000) */
  readonly deviceMessageBurst: number;
  /**
   * Requests per second (and the burst above it) of an API key without a limit of its own,
   * shared by the live instances; `undefined` (`API_KEY_RATE_LIMIT=0`): such keys are not limited. (Default: 100/200)
   */
  readonly apiKeyRateLimit: { readonly perSecond: number; readonly burst: number } | undefined;
  /** When set, `/metrics` is served unauthenticated on this port only; otherwise on PORT behind HTTP Basic. */
  readonly metricsPort: number | undefined;
  /** Finished actuations and closed sessions older than this many days are deleted; 0 keeps everything. (Default: 30) */
  readonly retentionDays: number;
  /** Change-feed events older than this many hours are deleted; 0 keeps every event. (Default: 24) */
  readonly eventsRetentionHours: number;
  /** SSE subscribers of `GET /v1/events` one instance serves at most; more are answered 503. (Default: 100) */
  readonly eventsMaxSubscribers: number;
  /** Bytes written to one SSE subscriber and not yet taken by its socket before it is dropped. (Default: 1 048 576) */
  readonly eventsSubscriberBufferBytes: number;
  /** An SSE comment (heartbeat) this often on every feed subscription. (Default: 15 000) */
  readonly eventsHeartbeatMs: number;
  /** A sequencing pass this often without a nudge (from the previous pass's start): the added latency of events no local commit announces. (Default: 20) */
  readonly eventsSequencerIntervalMs: number;
  /** A pass nudged by this instance's own commits starts no sooner than this after the previous pass started. (Default: 10) */
  readonly eventsSequencerMinGapMs: number;
  /** A second HTTP Basic credential that may read `/metrics` and nothing else (a scraper's); unset: none. */
  readonly metricsCredentials: { readonly username: string; readonly password: string } | undefined;
  /** A webhook event not delivered this many hours after it happened is marked failed, and its endpoint moves on. (Default: 24) */
  readonly webhookMaxAgeHours: number;
  /** Let webhooks reach loopback, private, link-local and metadata addresses (tests, a private network). (Default: false) */
  readonly webhookAllowPrivate: boolean;
  /** Bound on one webhook request, connect to last body byte read. (Default: 10 000) */
  readonly webhookTimeoutMs: number;
  /** First retry delay of a failed webhook delivery; doubles per attempt, with jitter. (Default: 1 000) */
  readonly webhookRetryMinMs: number;
  /** Longest retry delay of a webhook delivery. (Default: 600 000) */
  readonly webhookRetryMaxMs: number;
  /** Webhook endpoints this instance sends to at once (one request in flight each). (Default: 16) */
  readonly webhookMaxConcurrency: number;
  /** A caught-up webhook endpoint's next search for events, and the record of its outcomes, wait this long to take several events each: fewer statements per delivery for at most this much more latency; 0: at once. (Default: 20) */
  readonly webhookGatherMs: number;
  /** Run the webhook sender in a worker thread of its own, with its own small pool, so that its round trips do not wait behind the HTTP and device work. (Default: true) */
  readonly webhookSenderThread: boolean;
  /** The sender thread's nice value (0–19; Linux: the thread alone): under a full CPU the request and device work go first, the webhooks catch up after. (Default: 10) */
  readonly webhookSenderNice: number;
  /** 32 bytes (64 hex characters, or base64) that seal webhook secrets in the database; unset: stored as given. (Default: unset) */
  readonly webhookSecretKey: Buffer | undefined;
}

export type Environment = Readonly<Record<string, string | undefined>>;

export function loadConfig(env: Environment = process.env, cwd: string = process.cwd()): Config {
  const nodeEnv = env.NODE_ENV ?? 'development';
  const isProduction = nodeEnv === 'production';
  const vcap = vcapServices(env);

  const dataDir = path.resolve(cwd, nonEmpty(env, 'DATA_DIR') ?? 'data');
  const envDatabaseUrl = nonEmpty(env, 'DATABASE_URL');
  const databaseUrl = envDatabaseUrl ?? vcap.database?.uri;
  if (envDatabaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(envDatabaseUrl)) {
    throw new ConfigError('DATABASE_URL', 'must be a postgres:// connection string');
  }
  if (databaseUrl === undefined && isProduction) {
    throw new ConfigError('DATABASE_URL', 'is required in production (or bind a PostgreSQL service through VCAP_SERVICES)');
  }

  const apiCredentials = resolveApiCredentials(env, vcap, isProduction);

  const algorithms = list(env, 'DEVICE_TOKEN_ALGORITHMS') ?? ['RS256'];
  if (algorithms.length === 0) throw new ConfigError('DEVICE_TOKEN_ALGORITHMS', 'must name at least one algorithm');
  for (const alg of algorithms) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError('DEVICE_TOKEN_ALGORITHMS', `"${alg}" is not allowed; use one of ${ASYMMETRIC_ALGORITHMS.join(', ')}`);
    }
  }

  const logLevel = nonEmpty(env, 'LOG_LEVEL') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const workerIndex = nonEmpty(env, 'WORKER_INDEX') === undefined ? undefined : integer(env, 'WORKER_INDEX', 0, 0, MAX_WORKERS - 1);

  const config: Config = {
    nodeEnv,
    isProduction,
    port: integer(env, 'PORT', 5000, 0, 65535),
    host: nonEmpty(env, 'HOST') ?? '0.0.0.0',
    dataDir,
    databaseUrl,
    // The bound service's TLS options belong to its URI only, not to a DATABASE_URL set by hand.
    databaseSsl: databaseSsl(env, envDatabaseUrl === undefined ? vcap.database?.ssl : undefined),
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 200),
    databaseTimeoutMs: integer(env, 'DATABASE_TIMEOUT_MS', 5_000, 100, 600_000),
    devicePublicKeyPath: path.resolve(cwd, nonEmpty(env, 'DEVICE_PUBLIC_KEY_PATH') ?? 'keys/public.pem'),
    ...(nonEmpty(env, 'DEVICE_PUBLIC_KEY_PATH') === undefined && vcap.devicePublicKey !== undefined
      ? { devicePublicKeyPem: vcap.devicePublicKey }
      : {}),
    deviceTokenAlgorithms: algorithms as DeviceTokenAlgorithm[],
    deviceTokenRequireExp: boolean(env, 'DEVICE_TOKEN_REQUIRE_EXP') ?? true,
    deviceTokenMaxAgeSeconds: nonEmpty(env, 'DEVICE_TOKEN_MAX_AGE') === undefined ? undefined : integer(env, 'DEVICE_TOKEN_MAX_AGE', 0, 1, 100 * 365 * 86_400),
    apiCredentials,
    instanceId: instanceId(env, workerIndex),
    workers: workers(env),
    workerIndex,
    workerMaxRestartsPerMinute: integer(env, 'WORKER_MAX_RESTARTS_PER_MINUTE', 10, 1, 1_000),
    logLevel: logLevel as LogLevel,
    logFormat: oneOf(env, 'LOG_FORMAT', ['json', 'pretty'] as const, 'json'),
    authTimeoutMs: integer(env, 'AUTH_TIMEOUT_MS', 10_000, 100, 600_000),
    maxMessageBytes: integer(env, 'MAX_MESSAGE_BYTES', 64 * 1024, 256, 16 * 1024 * 1024),
    heartbeatIntervalMs: integer(env, 'HEARTBEAT_INTERVAL_MS', 30_000, 100, 3_600_000),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    instanceHeartbeatMs: integer(env, 'INSTANCE_HEARTBEAT_MS', 5_000, 100, 600_000),
    actuationTtlSeconds: integer(env, 'ACTUATION_TTL_SECONDS', 86_400, 0, 365 * 86_400),
    maxQueuedPerDevice: integer(env, 'MAX_QUEUED_PER_DEVICE', 1_000, 1, 1_000_000),
    redeliverUnacked: boolean(env, 'REDELIVER_UNACKED') ?? true,
    backlogRate: integer(env, 'BACKLOG_RATE', 500, 1, 1_000_000),
    sweepIntervalMs: integer(env, 'SWEEP_INTERVAL_MS', 1_000, 50, 600_000),
    dispatchPollMs: integer(env, 'DISPATCH_POLL_MS', 5_000, 100, 600_000),
    deviceMaxBufferedBytes: integer(env, 'DEVICE_MAX_BUFFERED_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    deviceMaxPendingMessages: integer(env, 'DEVICE_MAX_PENDING_MESSAGES', 1_000, 1, 1_000_000),
    deviceMaxMessagesPerSecond: integer(env, 'DEVICE_MAX_MESSAGES_PER_SECOND', 1_000, 1, 1_000_000),
    deviceMessageBurst: integer(env, 'DEVICE_MESSAGE_BURST', 2_000, 1, 10_000_000),
    retentionDays: integer(env, 'RETENTION_DAYS', 30, 0, 36_500),
    eventsRetentionHours: integer(env, 'EVENTS_RETENTION_HOURS', 24, 0, 87_600),
    eventsMaxSubscribers: integer(env, 'EVENTS_MAX_SUBSCRIBERS', 100, 0, 100_000),
    eventsSubscriberBufferBytes: integer(env, 'EVENTS_SUBSCRIBER_BUFFER_BYTES', 1024 * 1024, 16 * 1024, 1024 * 1024 * 1024),
    eventsHeartbeatMs: integer(env, 'EVENTS_HEARTBEAT_MS', 15_000, 100, 3_600_000),
    eventsSequencerIntervalMs: integer(env, 'EVENTS_SEQUENCER_INTERVAL_MS', 20, 1, 60_000),
    eventsSequencerMinGapMs: integer(env, 'EVENTS_SEQUENCER_MIN_GAP_MS', 10, 1, 60_000),
    apiKeyRateLimit: rateLimit(env, 'API_KEY_RATE_LIMIT', { perSecond: 100, burst: 200 }),
    metricsCredentials: metricsCredentials(env, isProduction),
    metricsPort: nonEmpty(env, 'METRICS_PORT') === undefined ? undefined : integer(env, 'METRICS_PORT', 0, 0, 65535),
    dssEnabled: boolean(env, 'DSS_ENABLED') ?? true,
    dssSupervisorIntervalMs: integer(env, 'DSS_SUPERVISOR_INTERVAL_MS', 2_000, 50, 600_000),
    dssReconnectMinMs: integer(env, 'DSS_RECONNECT_MIN_MS', 500, 10, 600_000),
    dssReconnectMaxMs: integer(env, 'DSS_RECONNECT_MAX_MS', 30_000, 10, 3_600_000),
    dssConnectTimeoutMs: integer(env, 'DSS_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000),
    dssIdleTimeoutMs: integer(env, 'DSS_IDLE_TIMEOUT_MS', 90_000, 100, 3_600_000),
    dssFlushIntervalMs: integer(env, 'DSS_FLUSH_INTERVAL_MS', 1_000, 10, 600_000),
    dssMaxQueuedEvents: integer(env, 'DSS_MAX_QUEUED_EVENTS', 1_000, 10, 1_000_000),
    dssMaxInFlightEvents: integer(env, 'DSS_MAX_IN_FLIGHT_EVENTS', 500, 1, 100_000),
    dssRulesRefreshMs: integer(env, 'DSS_RULES_REFRESH_MS', 2_000, 10, 3_600_000),
    jobsEnabled: boolean(env, 'JOBS_ENABLED') ?? true,
    jobsPollMs: integer(env, 'JOBS_POLL_MS', 1_000, 50, 60_000),
    jobsLeaseMs: integer(env, 'JOBS_LEASE_MS', 5_000, 500, 600_000),
    jobsRetentionDays: integer(env, 'JOBS_RETENTION_DAYS', 30, 0, 36_500),
    dssStateEnabled: boolean(env, 'DSS_STATE_ENABLED') ?? true,
    dssEventLogHours: integer(env, 'DSS_EVENT_LOG_HOURS', 24, 0, 8_760),
    dssIntervalPollMs: integer(env, 'DSS_INTERVAL_POLL_MS', 1_000, 50, 600_000),
    webhookMaxAgeHours: integer(env, 'WEBHOOK_MAX_AGE_HOURS', 24, 1, 720),
    webhookAllowPrivate: boolean(env, 'WEBHOOK_ALLOW_PRIVATE') ?? false,
    webhookTimeoutMs: integer(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
    webhookRetryMinMs: integer(env, 'WEBHOOK_RETRY_MIN_MS', 1_000, 10, 3_600_000),
    webhookRetryMaxMs: integer(env, 'WEBHOOK_RETRY_MAX_MS', 600_000, 10, 86_400_000),
    webhookMaxConcurrency: integer(env, 'WEBHOOK_MAX_CONCURRENCY', 16, 1, 1_000),
    webhookGatherMs: integer(env, 'WEBHOOK_GATHER_MS', 20, 0, 1_000),
    webhookSenderThread: boolean(env, 'WEBHOOK_SENDER_THREAD') ?? true,
    webhookSenderNice: integer(env, 'WEBHOOK_SENDER_NICE', 10, 0, 19),
    webhookSecretKey: secretKey(env, 'WEBHOOK_SECRET_KEY'),
  };
  if (config.jobsLeaseMs < 2 * config.jobsPollMs) {
    throw new ConfigError('JOBS_LEASE_MS', `must be at least twice JOBS_POLL_MS (${config.jobsPollMs}): the lease is renewed once per poll`);
  }
  if (config.dssReconnectMinMs > config.dssReconnectMaxMs) {
    throw new ConfigError('DSS_RECONNECT_MIN_MS', `must not exceed DSS_RECONNECT_MAX_MS (${config.dssReconnectMaxMs})`);
  }
  if (config.webhookRetryMinMs > config.webhookRetryMaxMs) {
    throw new ConfigError('WEBHOOK_RETRY_MIN_MS', `must not exceed WEBHOOK_RETRY_MAX_MS (${config.webhookRetryMaxMs})`);
  }
  return Object.freeze(config);
}

function vcapServices(env: Environment): VcapServices {
  try {
    return parseVcapServices(env.VCAP_SERVICES);
  } catch (err) {
    if (err instanceof VcapError) throw new ConfigError('VCAP_SERVICES', err.detail, { cause: err });
    throw err;
  }
}

/** The environment's pair wins as a pair over the `websocket-ups` service's: the two are never mixed. */
function resolveApiCredentials(env: Environment, vcap: VcapServices, isProduction: boolean): Config['apiCredentials'] {
  const fromEnv = nonEmpty(env, 'API_USERNAME') !== undefined || nonEmpty(env, 'API_PASSWORD') !== undefined;
  const source = fromEnv
    ? { username: nonEmpty(env, 'API_USERNAME'), password: nonEmpty(env, 'API_PASSWORD') }
    : (vcap.apiCredentials ?? {});
  const where = (name: 'username' | 'password') =>
    fromEnv ? (name === 'username' ? 'API_USERNAME' : 'API_PASSWORD') : 'VCAP_SERVICES';
  const { username, password } = source;
  if ((username === undefined) !== (password === undefined)) {
    const missing = username === undefined ? 'username' : 'password';
    throw new ConfigError(
      where(missing),
      fromEnv
        ? 'API_USERNAME and API_PASSWORD must be set together'
        : `service "${CREDENTIALS_SERVICE_NAME}" has no credentials.${missing}`,
    );
  }
  if (username === undefined || password === undefined) {
    if (!isProduction) return undefined;
    throw new ConfigError(
      'API_USERNAME',
      vcap.apiCredentials
        ? `service "${CREDENTIALS_SERVICE_NAME}" has no credentials.username and credentials.password`
        : `API_USERNAME and API_PASSWORD are required in production (or bind the user-provided service "${CREDENTIALS_SERVICE_NAME}")`,
    );
  }
  if (isProduction && password.length < 12) {
    throw new ConfigError(where('password'), `${fromEnv ? 'API_PASSWORD' : `"${CREDENTIALS_SERVICE_NAME}" password`} must be at least 12 characters in production`);
  }
  return { username, password };
}

/** `METRICS_USERNAME` and `METRICS_PASSWORD`, set together or not at all. */
function metricsCredentials(env: Environment, isProduction: boolean): Config['metricsCredentials'] {
  const username = nonEmpty(env, 'METRICS_USERNAME');
  const password = nonEmpty(env, 'METRICS_PASSWORD');
  if ((username === undefined) !== (password === undefined)) {
    throw new ConfigError(username === undefined ? 'METRICS_USERNAME' : 'METRICS_PASSWORD', 'METRICS_USERNAME and METRICS_PASSWORD must be set together');
  }
  if (username === undefined || password === undefined) return undefined;
  if (isProduction && password.length < 12) throw new ConfigError('METRICS_PASSWORD', 'must be at least 12 characters in production');
  return { username, password };
}

/**
 * `INSTANCE_ID`, else Cloud Foundry's instance: the GUID is unique for the container's life (an
 * index is reused by the replacement during a rolling restart), and the index in front tells the
 * operator which `cf app` row it is.
 */
function instanceId(env: Environment, workerIndex: number | undefined): string {
  const base = baseInstanceId(env);
  // Each worker is an instance of its own; the same index keeps the same id across its restarts,
  // so a restarted worker closes at once the sessions its predecessor left open.
  return workerIndex === undefined ? base : `${base}-w${workerIndex}`;
}

function baseInstanceId(env: Environment): string {
  const explicit = nonEmpty(env, 'INSTANCE_ID');
  if (explicit !== undefined) return explicit;
  const guid = nonEmpty(env, 'CF_INSTANCE_GUID');
  if (guid !== undefined) {
    const index = nonEmpty(env, 'CF_INSTANCE_INDEX') === undefined ? undefined : integer(env, 'CF_INSTANCE_INDEX', 0, 0, 100_000);
    return index === undefined ? guid : `${index}-${guid}`;
  }
  return `${os.hostname()}-${process.pid}`;
}

/** Far above any useful count (one socket-bound process per core), low enough to catch a typo. */
const MAX_WORKERS = 64;

/** `WORKERS`: a whole number, or `auto` for one per core (as many as this process may use). */
function workers(env: Environment): number {
  const raw = nonEmpty(env, 'WORKERS');
  if (raw?.toLowerCase() === 'auto') return Math.min(MAX_WORKERS, os.availableParallelism());
  if (raw !== undefined && !/^\d+$/.test(raw)) throw new ConfigError('WORKERS', `must be a whole number or auto, got "${raw}"`);
  return integer(env, 'WORKERS', 1, 1, MAX_WORKERS);
}

/** 32 bytes as 64 hex characters or as base64; the message never quotes the value. */
function secretKey(env: Environment, name: string): Buffer | undefined {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return undefined;
  const key = /^[0-9a-f]{64}$/i.test(raw) ? Buffer.from(raw, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(raw) ? Buffer.from(raw, 'base64') : undefined;
  if (key?.length !== 32) throw new ConfigError(name, 'must be 32 bytes: 64 hex characters or 44 base64 characters (openssl rand -hex 32)');
  return key;
}

function nonEmpty(env: Environment, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function list(env: Environment, name: string): string[] | undefined {
  const value = nonEmpty(env, name);
  return value?.split(',').map((s) => s.trim()).filter(Boolean);
}

function integer(env: Environment, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** `<requests per second>[/<burst>]` (burst: twice the rate when omitted); `0` for none. */
function rateLimit(env: Environment, name: string, fallback: { perSecond: number; burst: number }): Config['apiKeyRateLimit'] {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  const match = /^(\d+)(?:\/(\d+))?$/.exec(raw);
  if (!match) throw new ConfigError(name, `must be <requests per second>[/<burst>] (e.g. 100/200), or 0 for no limit, got "${raw}"`);
  const perSecond = Number(match[1]);
  if (perSecond === 0 && match[2] === undefined) return undefined;
  const burst = match[2] === undefined ? 2 * perSecond : Number(match[2]);
  if (perSecond < 1 || perSecond > 100_000) throw new ConfigError(name, `requests per second must be between 1 and 100000 (or 0 for no limit), got ${perSecond}`);
  if (burst < 1 || burst > 200_000) throw new ConfigError(name, `burst must be between 1 and 200000, got ${burst}`);
  return { perSecond, burst };
}

function boolean(env: Environment, name: string): boolean | undefined {
  const raw = nonEmpty(env, name)?.toLowerCase();
  if (raw === undefined) return undefined;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function databaseSsl(env: Environment, fromVcap: DatabaseSsl | undefined): DatabaseSsl {
  const enabled = boolean(env, 'DATABASE_SSL');
  const rejectUnauthorized = boolean(env, 'DATABASE_SSL_REJECT_UNAUTHORIZED');
  if (enabled === false) return false;
  const base = fromVcap || (enabled === true ? { rejectUnauthorized: true } : false);
  if (base === false) return false;
  return { ...base, rejectUnauthorized: rejectUnauthorized ?? base.rejectUnauthorized };
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: readonly T[], fallback: T): T {
  const value = nonEmpty(env, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}
