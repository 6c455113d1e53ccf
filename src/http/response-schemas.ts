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

const source = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('rest'), caller: z.string(), requestId: z.string() }),
  z.strictObject({ kind: z.literal('dss'), streamId: z.string(), seq: z.number().int(), ruleId: z.string() }),
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

export const device = z.strictObject({ deviceId: z.string(), online: z.boolean(), session: session.nullable(), lastSession: session });
export const devicePage = z.strictObject({
  items: z.array(z.strictObject({ deviceId: z.string(), online: z.boolean(), lastSession: session })),
  nextCursor: z.string().nullable(),
});
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
    createdAt: time,
    updatedAt: time,
  });
export const ruleList = z.strictObject({ items: z.array(rule) });

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
  createdAt: time,
  expiresAt: nullableTime,
  revokedAt: nullableTime,
  lastUsedAt: nullableTime,
});
/** The answer to a creation: the key with its secret (`key`), shown this once. */
export const createdApiKey = apiKey.extend({ key: z.string().startsWith('iotws_') });
export const apiKeyList = z.strictObject({ items: z.array(apiKey) });

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
