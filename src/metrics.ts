/**
 * Prometheus metrics (prom-client), one registry per app so that tests and several
 * apps in one process never share counters. Parts receive `metrics` and count what
 * they do; gauges that mirror state (connected devices, queue depth, pool use) are
 * read when scraped.
 */
import client from 'prom-client';
import type { ActuationListener } from './actuations/lifecycle.js';
import type { Pool } from './db/pool.js';
import type { IntervalEvaluationReport } from './dss/interval-tasks.js';
import { CLOSE_CODES, LIBRARY_CLOSE_CODES } from './gateway/protocol.js';

/** Close codes a session may end with: the server's own and those the `ws` library or the network produce. */
const DOCUMENTED_CLOSE_CODES = new Set<number>([...Object.values(CLOSE_CODES), ...Object.values(LIBRARY_CLOSE_CODES)].map((c) => c.code));

/** The `code` label of `iotws_sessions_closed_total`: a device picks its own close code, so anything undocumented is `other`. */
export function closeCodeLabel(code: number): string {
  return DOCUMENTED_CLOSE_CODES.has(code) ? String(code) : 'other';
}

export interface Metrics {
  registry: client.Registry;
  authentications: client.Counter<'result'>;
  sessionsOpened: client.Counter;
  sessionsClosed: client.Counter<'code'>;
  /** Transitions, by where the actuation came from and the status it entered. */
  actuations: client.Counter<'source' | 'status'>;
  postToSentSeconds: client.Histogram;
  postToAckedSeconds: client.Histogram;
  dssFrames: client.Counter<'stream' | 'kind'>;
  databaseErrors: client.Counter<'operation'>;
  /** Device acks by outcome: acked, failed, late, unknown (a client mistake), retried, dropped (database unavailable). */
  acks: client.Counter<'outcome'>;
  /** Rows deleted by retention (RETENTION_DAYS), by table. */
  retentionDeleted: client.Counter<'table'>;
  /** HTTP requests by route template (bounded: `unmatched` when no route matched), method and status class. */
  /** The change feed: events numbered by this instance's sequencer passes, their lag, subscribers that ended. */
  eventsSequenced: client.Counter;
  eventsSequencerLagSeconds: client.Histogram;
  eventSubscribersClosed: client.Counter<'reason'>;
  httpRequests: client.Counter<'route' | 'method' | 'status_class'>;
  httpRequestSeconds: client.Histogram<'route' | 'method' | 'status_class'>;
  /** Audit entries not written, by why: full (AUDIT_MAX_PENDING waiting for the database), refused, shutdown. */
  auditDropped: client.Counter<'reason'>;
  /** Interval rules' evaluations run here, by outcome (finished, failed), the actions they fired, how long a finished one took. */
  dssIntervalEvaluations: client.Counter<'outcome'>;
  dssIntervalActionsFired: client.Counter;
  dssIntervalEvaluationSeconds: client.Histogram;
}

export interface MetricsSources {
  pool: Pool;
  connectedDevices(): number;
  /** SSE subscribers of the change feed on this instance. */
  eventSubscribers?(): number;
}

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600];

export function makeMetrics(sources: MetricsSources): Metrics {
  const registry = new client.Registry();
  // Process CPU, memory, GC and event-loop lag (nodejs_eventloop_lag_*).
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const registers = [registry];

  new client.Gauge({
    name: 'iotws_connected_devices',
    help: 'Authenticated devices connected to this instance (with WORKERS > 1: to all its workers, summed)',
    registers,
    collect() {
      this.set(sources.connectedDevices());
    },
  });
  new client.Gauge({
    name: 'iotws_event_subscribers',
    help: 'SSE subscribers of the change feed (GET /v1/events) on this instance',
    registers,
    collect() {
      this.set(sources.eventSubscribers?.() ?? 0);
    },
  });
  new client.Gauge({
    name: 'iotws_actuations_queued',
    // Read from the shared database: every instance reports the same deployment-wide count.
    help: 'Queued actuations in the database, deployment-wide: every instance reports the same value, so do not sum across instances (use max)',
    registers,
    async collect() {
      const { rows } = await sources.pool.query<{ n: number }>(`select count(*)::int as n from actuations where status = 'queued'`);
      this.set(rows[0]?.n ?? 0);
    },
  });
  // One meaning per metric: connections by state (the states sum to the pool's open
  // connections), and callers waiting for one, which are not connections.
  new client.Gauge({
    name: 'iotws_db_pool_connections',
    help: 'Open database pool connections of this instance, by state (idle, in_use); the states sum to the open connections',
    labelNames: ['state'],
    registers,
    collect() {
      const { totalCount, idleCount } = sources.pool;
      this.set({ state: 'idle' }, idleCount);
      this.set({ state: 'in_use' }, totalCount - idleCount);
    },
  });
  new client.Gauge({
    name: 'iotws_db_pool_waiting_clients',
    help: 'Callers of this instance waiting for a database pool connection',
    registers,
    collect() {
      this.set(sources.pool.waitingCount);
    },
  });

  const databaseErrors = new client.Counter({ name: 'iotws_database_errors_total', help: 'Database failures by where they surfaced', labelNames: ['operation'], registers });
  // An idle pooled connection that breaks (database restart, network) surfaces only here.
  sources.pool.on('error', () => databaseErrors.inc({ operation: 'idle_connection' }));

  return {
    registry,
    authentications: new client.Counter({ name: 'iotws_device_authentications_total', help: 'Device authentications by result', labelNames: ['result'], registers }),
    sessionsOpened: new client.Counter({ name: 'iotws_sessions_opened_total', help: 'Device sessions opened', registers }),
    sessionsClosed: new client.Counter({ name: 'iotws_sessions_closed_total', help: 'Device sessions closed, by WebSocket close code', labelNames: ['code'], registers }),
    actuations: new client.Counter({ name: 'iotws_actuations_total', help: 'Actuation transitions by source and new status', labelNames: ['source', 'status'], registers }),
    postToSentSeconds: new client.Histogram({ name: 'iotws_actuation_post_to_sent_seconds', help: 'From accepted (committed) to written to the device socket', buckets: LATENCY_BUCKETS, registers }),
    postToAckedSeconds: new client.Histogram({ name: 'iotws_actuation_post_to_acked_seconds', help: 'From accepted to acknowledged by the device', buckets: LATENCY_BUCKETS, registers }),
    dssFrames: new client.Counter({ name: 'iotws_dss_frames_total', help: 'DSS stream frames by stream and kind (event, heartbeat, error)', labelNames: ['stream', 'kind'], registers }),
    databaseErrors,
    acks: new client.Counter({ name: 'iotws_device_acks_total', help: 'Device acks by outcome (retried/dropped: the database was unavailable)', labelNames: ['outcome'], registers }),
    eventsSequenced: new client.Counter({ name: 'iotws_events_sequenced_total', help: 'Change-feed events numbered by the sequencer passes of this instance', registers }),
    eventsSequencerLagSeconds: new client.Histogram({
      name: 'iotws_events_sequencer_lag_seconds',
      help: "Per sequencing pass of this instance, the oldest event's age when numbered: from its transaction's start to readable by subscribers",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    eventSubscribersClosed: new client.Counter({
      name: 'iotws_event_subscribers_closed_total',
      help: 'Change-feed subscriptions ended, by reason (client_left, slow_subscriber: dropped for not reading, shutting_down, read_failed)',
      labelNames: ['reason'],
      registers,
    }),
    httpRequests: new client.Counter({ name: 'iotws_http_requests_total', help: 'HTTP requests by route template, method and status class', labelNames: ['route', 'method', 'status_class'], registers }),
    httpRequestSeconds: new client.Histogram({
      name: 'iotws_http_request_duration_seconds',
      help: 'From request received to response finished, by route template, method and status class',
      labelNames: ['route', 'method', 'status_class'],
      buckets: HTTP_BUCKETS,
      registers,
    }),
    auditDropped: new client.Counter({ name: 'iotws_audit_dropped_total', help: 'Audit entries not written: full (10,000 waiting for the database), refused by it, or left at shutdown', labelNames: ['reason'], registers }),
    retentionDeleted: new client.Counter({ name: 'iotws_retention_deleted_rows_total', help: 'Rows deleted by retention (RETENTION_DAYS), by table; counted by the instance that deleted them', labelNames: ['table'], registers }),
    dssIntervalEvaluations: new client.Counter({
      name: 'iotws_dss_interval_evaluations_total',
      help: "Interval rules' evaluations run by this instance: finished, or failed (taken up again after the lease)",
      labelNames: ['outcome'],
      registers,
    }),
    dssIntervalActionsFired: new client.Counter({ name: 'iotws_dss_interval_actions_fired_total', help: 'Actuations submitted by interval rules\' finished evaluations on this instance (one per fired device)', registers }),
    dssIntervalEvaluationSeconds: new client.Histogram({
      name: 'iotws_dss_interval_evaluation_seconds',
      help: "From an interval rule's claim to its evaluation's end (finished ones), on this instance",
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}

/** Counts an interval rule's evaluation (`DssOptions.onIntervalEvaluated`). */
export function intervalEvaluationMetrics(metrics: Metrics): (report: IntervalEvaluationReport) => void {
  return (report) => {
    metrics.dssIntervalEvaluations.inc({ outcome: report.outcome });
    if (report.outcome !== 'finished') return;
    metrics.dssIntervalActionsFired.inc(report.fired);
    metrics.dssIntervalEvaluationSeconds.observe(report.seconds);
  };
}

/**
 * The lifecycle's metrics listener: every committed transition by source and new status
 * (`iotws_actuations_total`), and from accepted to sent (each attempt) and to acked.
 */
export function actuationTransitionMetrics(metrics: Metrics): ActuationListener {
  return (event) => {
    metrics.actuations.inc({ source: event.source, status: event.status });
    const sinceAccepted = (event.at.getTime() - event.createdAt.getTime()) / 1000;
    if (event.status === 'sent') metrics.postToSentSeconds.observe(sinceAccepted);
    else if (event.status === 'acked') metrics.postToAckedSeconds.observe(sinceAccepted);
  };
}
