/**
 * Response schemas of the REST API (zod), as a client receives them (JSON: times are
 * ISO 8601 strings). The OpenAPI document's success responses come from here, and
 * `test/integration/openapi.test.ts` checks every answer the integration tests get
 * against the document, so a route that changes its answer without this file fails.
 */
import { z } from 'zod';
import { ACTUATION_STATUSES } from '../actuations/types.js';
import { ruleCreateBody } from '../dss/schemas.js';
import { API_ERRORS, type ApiErrorCode } from './errors.js';

const time = z
  .string()
  .regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/)
  .meta({ format: 'date-time' });
const nullableTime = time.nullable();
const status = z.enum(ACTUATION_STATUSES);

/** `{"error":{"code","message"}}` with the catalogue's codes of one HTTP status (all codes when omitted). */
export function errorResponse(httpStatus?: number) {
  const codes = (Object.keys(API_ERRORS) as ApiErrorCode[]).filter((c) => httpStatus === undefined || API_ERRORS[c].status === httpStatus);
  return z.strictObject({ error: z.strictObject({ code: z.enum(codes as [ApiErrorCode, ...ApiErrorCode[]]), message: z.string() }) });
}

export const actuationSummary = z
  .strictObject({ id: z.uuid(), deviceId: z.string(), seq: z.number().int(), status, createdAt: time, expiresAt: nullableTime });

/** What created a job: a REST caller, or a schedule's occurrence. */
const jobCause = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('rest'), caller: z.string(), requestId: z.string() }),
  z.strictObject({ kind: z.literal('schedule'), scheduleId: z.uuid(), occurrence: time }),
]);

const source = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('rest'), caller: z.string(), requestId: z.string() }),
  z.strictObject({ kind: z.literal('dss'), streamId: z.string(), seq: z.number().int(), ruleId: z.string() }),
  z.strictObject({ kind: z.literal('job'), jobId: z.uuid(), cause: jobCause }),
]);

export const actuationRecord = z
  .strictObject({
    id: z.uuid(),
    deviceId: z.string(),
    seq: z.number().int(),
    status,
    accountId: z.string().nullable(),
    gatewayId: z.string(),
    componentId: z.string(),
    command: z.string(),
    params: z.array(z.object({ name: z.string(), value: z.unknown() })),
    collapseKey: z.string().nullable(),
    supersededBy: z.uuid().nullable(),
    idempotencyKey: z.string().nullable(),
    source,
    createdAt: time,
    expiresAt: nullableTime,
    ackTimeoutSeconds: z.number().int().nullable(),
    ackDeadlineAt: nullableTime,
    sentAt: nullableTime,
    completedAt: nullableTime,
    attempts: z.number().int(),
    lastSessionId: z.number().int().nullable(),
    lastInstanceId: z.string().nullable(),
    statusCode: z.number().int().nullable(),
    reasonPhrase: z.string().nullable(),
    /** Every transition with its time (`status`), and events that changed nothing (`event`, e.g. `late_ack`). */
    history: z.array(z.looseObject({ at: time, status: status.optional(), event: z.string().optional() })),
  });

export const actuationPage = z.strictObject({ items: z.array(actuationRecord), nextCursor: z.string().nullable() });

export const cancelledActuation = z.strictObject({ id: z.uuid(), status });

export const bulkResults = z.strictObject({
  results: z.array(
    z.union([
      z.strictObject({ index: z.number().int(), status: z.union([z.literal(200), z.literal(202)]), actuation: actuationSummary }),
      z.strictObject({ index: z.number().int(), status: z.number().int().min(400), error: errorResponse().shape.error }),
    ]),
  ),
});

export const session = z
  .strictObject({
    id: z.number().int(),
    deviceId: z.string(),
    accountId: z.string().nullable(),
    instanceId: z.string(),
    remoteAddress: z.string().nullable(),
    connectedAt: time,
    lastSeenAt: time,
    disconnectedAt: nullableTime,
    closeCode: z.number().int().nullable(),
    closeReason: z.string().nullable(),
  });

/** A device in the registry (`src/devices/registry-sql.ts` DeviceRecord). */
export const deviceRecord = z.strictObject({
  deviceId: z.string(),
  accountId: z.string().nullable(),
  name: z.string().nullable(),
  tags: z.record(z.string(), z.string()),
  online: z.boolean(),
  registeredAt: nullableTime,
  firstSeenAt: nullableTime,
  lastSeenAt: nullableTime,
  createdAt: time,
  updatedAt: time,
  /** Null for a device registered that never connected. */
  lastSession: session.nullable(),
});
export const accountChange = z.strictObject({ accountId: z.string(), sessionId: z.number().int(), at: time });
/** One device: its record, its open session (null when offline) and the account changes its tokens made, newest first. */
export const device = deviceRecord.extend({ session: session.nullable(), accountChanges: z.array(accountChange) });
export const devicePage = z.strictObject({ items: z.array(deviceRecord), nextCursor: z.string().nullable() });
export const sessionPage = z.strictObject({ items: z.array(session), nextCursor: z.string().nullable() });

export const stream = z
  .strictObject({
    id: z.uuid(),
    name: z.string(),
    url: z.string(),
    /** Write-only: `****` and at most the last 4 characters. */
    streamKey: z.string(),
    enabled: z.boolean(),
    createdAt: time,
    updatedAt: time,
    status: z.strictObject({
      holder: z.string().nullable(),
      connected: z.boolean(),
      connectedAt: nullableTime,
      lastEventAt: nullableTime,
      lastSeq: z.number().int().nullable(),
      events: z.number().int(),
      heartbeats: z.number().int(),
      errors: z.number().int(),
      lastError: z.string().nullable(),
    }),
  });
export const streamList = z.strictObject({ items: z.array(stream) });

export const rule = z
  .strictObject({
    id: z.uuid(),
    name: z.string(),
    enabled: z.boolean(),
    match: ruleCreateBody.shape.match,
    action: ruleCreateBody.shape.action,
    cooldownSeconds: z.number().int(),
    /** An interval rule's interval (`"5m"`); null for an event rule. */
    every: z.string().nullable(),
    createdAt: time,
    updatedAt: time,
  });
export const ruleList = z.strictObject({ items: z.array(rule) });
/** One rule; an interval rule also shows when it runs next and its latest evaluations (newest first, up to 10). */
export const ruleDetail = rule.extend({
  interval: z
    .strictObject({
      nextRunAt: nullableTime,
      evaluations: z.array(z.strictObject({ number: z.number().int(), instanceId: z.string(), claims: z.number().int(), startedAt: time, finishedAt: nullableTime, matched: z.number().int(), fired: z.number().int() })),
    })
    .optional(),
});

/** A device's last known state from DSS events. */
export const dssDeviceState = z.strictObject({
  dsn: z.string(),
  oemModel: z.string().nullable(),
  connectivity: z.strictObject({ status: z.string(), updatedAt: time, seq: z.number().int(), streamId: z.uuid() }).nullable(),
  properties: z.array(
    z.strictObject({ name: z.string(), value: z.unknown(), baseType: z.string().nullable(), updatedAt: time, seq: z.number().int(), streamId: z.uuid() }),
  ),
});

/** A page of a stream's recent-event log, newest first; `nextCursor` null on the last page. */
export const dssEventLogPage = z.strictObject({
  items: z.array(
    z.strictObject({
      seq: z.number().int(),
      eventType: z.string(),
      dsn: z.string(),
      oemModel: z.string().nullable(),
      propertyName: z.string().nullable(),
      baseType: z.string().nullable(),
      value: z.unknown(),
      at: time,
      receivedAt: time,
    }),
  ),
  nextCursor: z.string().nullable(),
});

export const health = z.strictObject({ status: z.literal('ok') });
export const ready = z.strictObject({ status: z.literal('ready') });
/** The OpenAPI document itself (described loosely: its own schema is the OpenAPI 3.1 specification). */
export const openApiJson = z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.looseObject({}) });

/** An API key as listed: never its secret, nor the secret's hash. */
export const apiKey = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  /** `iotws_<lookup id>`: the start of the key, to recognise it. */
  prefix: z.string(),
  scopes: z.array(z.string()),
  /** The accounts the key is limited to; null: every account. */
  accounts: z.array(z.string()).nullable(),
  createdAt: time,
  expiresAt: nullableTime,
  revokedAt: nullableTime,
  lastUsedAt: nullableTime,
  /** The key's own rate limit (requests per second, burst); `null`: the configured default (API_KEY_RATE_LIMIT). */
  rateLimit: z.strictObject({ perSecond: z.number().int(), burst: z.number().int() }).nullable(),
});
/** The answer to a creation: the key with its secret (`key`), shown this once. */
export const createdApiKey = apiKey.extend({ key: z.string().startsWith('iotws_') });
export const apiKeyList = z.strictObject({ items: z.array(apiKey) });

/** A job as listed (GET /v1/jobs); GET /v1/jobs/:id adds its counts and timeline. */
export const jobSummary = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  state: z.enum(['scheduled', 'running', 'completed', 'cancelled', 'aborted']),
  /** Why it was aborted (the counts that crossed the threshold), or who cancelled it. */
  stateReason: z.string().nullable(),
  target: z.union([
    z.strictObject({ kind: z.literal('deviceIds'), count: z.number().int() }),
    z.strictObject({
      kind: z.literal('filter'),
      tags: z.record(z.string(), z.string()).optional(),
      accountId: z.string().optional(),
      online: z.boolean().optional(),
      /** Devices that match later are targeted too (`targets` grows). */
      continuous: z.literal(true).optional(),
    }),
  ]),
  /** The accounts of the API key that created it (null: no limit). */
  accounts: z.array(z.string()).nullable(),
  actuation: z.looseObject({ componentId: z.string(), command: z.string(), params: z.array(z.object({ name: z.string(), value: z.unknown() })) }),
  rollout: z.strictObject({ maxPerMinute: z.number().int().nullable() }),
  abort: z.strictObject({ failedPercent: z.number(), minCompleted: z.number().int() }).nullable(),
  startAt: time,
  /** A continuous target stops growing then (null: never, or not continuous). */
  endAt: nullableTime,
  createdAt: time,
  startedAt: nullableTime,
  finishedAt: nullableTime,
  createdBy: jobCause,
  scheduleId: z.uuid().nullable(),
  /** Target devices (known once it started, for a filter). */
  targets: z.number().int().nullable(),
  /** Targets released so far (an actuation made, or refused). */
  released: z.number().int(),
  /** The instance releasing it now and until when its lease runs. */
  holder: z.strictObject({ instanceId: z.string(), leaseUntil: time }).nullable(),
});
export const jobPage = z.strictObject({ items: z.array(jobSummary), nextCursor: z.string().nullable() });
export const job = jobSummary.extend({
  counts: z.strictObject({
    notReleased: z.number().int(),
    refused: z.number().int(),
    queued: z.number().int(),
    sent: z.number().int(),
    acked: z.number().int(),
    failed: z.number().int(),
    timed_out: z.number().int(),
    expired: z.number().int(),
    cancelled: z.number().int(),
    superseded: z.number().int(),
    deleted: z.number().int(),
  }),
  /** Every state change and takeover: `{at, state}` or `{at, event: "leased", instance}`. */
  timeline: z.array(z.looseObject({ at: time, state: z.string().optional(), event: z.string().optional() })),
});

export const schedule = z.strictObject({
  id: z.uuid(),
  name: z.string(),
  cron: z.string(),
  timezone: z.string(),
  job: z.looseObject({ name: z.string(), target: z.looseObject({}), actuation: z.looseObject({}) }),
  enabled: z.boolean(),
  misfireGraceSeconds: z.number().int(),
  accounts: z.array(z.string()).nullable(),
  createdAt: time,
  updatedAt: time,
  /** The next five occurrences (none while disabled). */
  nextOccurrences: z.array(time),
  /** The latest decided occurrences, newest first: the job each created, or `skipped` (missed beyond the grace). */
  lastRuns: z.array(
    z.strictObject({ occurrence: time, outcome: z.enum(['fired', 'skipped']), jobId: z.uuid().nullable(), jobState: z.string().nullable(), decidedAt: time, decidedBy: z.string() }),
  ),
});
export const scheduleList = z.strictObject({ items: z.array(schedule) });

/** One mutating REST call as the audit log keeps it (never a body, a header or a secret). */
export const auditEntry = z.strictObject({
  id: z.uuid(),
  at: time,
  actorKind: z.enum(['key', 'bootstrap', 'anonymous']),
  keyId: z.uuid().nullable(),
  actor: z.string().nullable(),
  method: z.string(),
  route: z.string(),
  targets: z.record(z.string(), z.unknown()),
  status: z.number().int(),
  requestId: z.string(),
  remoteAddress: z.string().nullable(),
});
export const auditPage = z.strictObject({ items: z.array(auditEntry), nextCursor: z.string().nullable() });

/** The answer to a revocation of a device's tokens. */
export const deviceTokenRevocation = z.strictObject({ deviceId: z.string(), revokedBefore: time });

/** A webhook endpoint: never its secret. */
export const webhook = z.strictObject({
  id: z.uuid(),
  url: z.string(),
  events: z.array(z.string()),
  enabled: z.boolean(),
  /** The accounts whose events it receives (those of the key that created it); null: every event. */
  accounts: z.array(z.string()).nullable(),
  /** Why the server disabled it (a 410 Gone); null otherwise. */
  disabledReason: z.string().nullable(),
  /** The last event id it is done with (delivered, or failed after WEBHOOK_MAX_AGE_HOURS). */
  lastEventId: z.number().int(),
  createdAt: time,
  updatedAt: time,
});
export const webhookList = z.strictObject({ items: z.array(webhook) });
export const webhookDeliveryPage = z.strictObject({
  items: z.array(
    z.strictObject({
      eventId: z.number().int(),
      eventType: z.string(),
      status: z.enum(['pending', 'delivered', 'failed']),
      attempts: z.number().int(),
      firstAttemptAt: time,
      lastAttemptAt: time,
      nextAttemptAt: nullableTime,
      lastStatusCode: z.number().int().nullable(),
      lastError: z.string().nullable(),
    }),
  ),
  nextCursor: z.string().nullable(),
});
export const webhookTestResult = z.strictObject({ delivered: z.boolean(), statusCode: z.number().int().nullable(), error: z.string().nullable() });
