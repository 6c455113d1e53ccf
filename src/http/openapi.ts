/**
 * The OpenAPI 3.1 description of the REST API, generated from the same zod schemas
 * that validate requests (zod's JSON Schema output is draft 2020-12, which 3.1 uses).
 * `test/integration/openapi.test.ts` checks that every route served is described,
 * that every described body is validated, and that each example is accepted.
 */
import { z } from 'zod';
import { ruleCreateBody, ruleUpdateBody, streamCreateBody, streamUpdateBody } from '../dss/schemas.js';
import { dsnParam, eventLogQuery, idParam } from '../dss/schemas.js';
import * as out from './response-schemas.js';
import { apiKeyCreateBody, apiKeyIdParam } from '../keys/schemas.js';
import { jobActuationsQuery, jobCreateBody, jobIdParam, jobsQuery, scheduleCreateBody, scheduleUpdateBody } from '../jobs/schemas.js';
import type { Scope } from '../keys/scopes.js';
import { deviceListQuery, devicePatchBody, devicePutBody } from '../devices/schemas.js';
import { actuationBody, actuationIdParam, bulkActuationItem, deviceActuationsQuery, deviceIdParam, eventIdText, eventsQuery, idempotencyKeyHeader, paginationQuery } from './schemas.js';
import { auditQuery } from '../audit/schemas.js';
import { deliveriesQuery, webhookCreateBody, webhookIdParam, webhookUpdateBody } from '../webhooks/schemas.js';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface RouteDoc {
  method: Method;
  /** The router's path (`:param`), as fastify and the audit log name the route. */
  path: string;
  /** Unique; what a generated client names the call. */
  operationId: string;
  summary: string;
  auth: boolean;
  /** The scope a caller needs (every authenticated route has one; `src/http/auth.ts` refuses to start otherwise). */
  scope?: Scope;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Media types of the request body (default `application/json`). */
  bodyTypes?: string[];
  /** A valid request body; the test submits it. */
  example?: unknown;
  headers?: { name: string; description: string; schema?: z.ZodType }[];
  /** Descriptions of the success answers and of the errors particular to this route (404, 409, 429). */
  responses: Record<number, string>;
  /** The JSON body of each success answer (none for 204); `text` for a non-JSON one. */
  bodies?: Record<number, z.ZodType | { text: string }>;
}

const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

const dev = { params: deviceIdParam };
const actuation = { params: actuationIdParam };
const byId = { params: idParam };
const webhookById = { params: webhookIdParam };

export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthz', operationId: 'getHealth', summary: 'The process is up', auth: false, responses: { 200: 'Up' }, bodies: { 200: out.health } },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'getReadiness',
    summary: 'The database answers (Cloud Foundry health check)',
    auth: false,
    responses: { 200: 'Ready' },
    bodies: { 200: out.ready },
  },
  {
    method: 'get',
    path: '/v1/openapi.json',
    operationId: 'getOpenApiDocument',
    summary: 'This document (unauthenticated, like the reference page: it describes the API, it grants nothing)',
    auth: false,
    responses: { 200: 'OpenAPI 3.1 document' },
    bodies: { 200: out.openApiJson },
  },
  {
    method: 'get',
    path: '/v1/docs',
    operationId: 'getApiReference',
    summary: 'A human-readable reference of this document (HTML, rendered in the browser from /v1/openapi.json)',
    auth: false,
    responses: { 200: 'HTML page' },
    bodies: { 200: { text: 'text/html' } },
  },
  {
    method: 'get',
    path: '/metrics',
    operationId: 'getMetrics',
    summary: 'Prometheus metrics (here unless METRICS_PORT is set)',
    auth: true,
    scope: 'metrics:read',
    responses: { 200: 'Prometheus text format', 404: 'Served on METRICS_PORT instead (when set)' },
    bodies: { 200: { text: 'text/plain' } },
  },
  {
    method: 'get',
    path: '/v1/events',
    operationId: 'streamEvents',
    summary:
      'The change feed as Server-Sent Events: actuation, device and DSS stream transitions in commit order, each `id: <position>`, `event: <type>`, `data: {id, type, at, data}` (README, "Change feed")',
    auth: true,
    scope: 'events:read',
    query: eventsQuery,
    headers: [{ name: 'Last-Event-ID', description: 'Resume right after this event id (wins over `after`); EventSource sends it on reconnect', schema: eventIdText }],
    responses: {
      200: 'An event stream (text/event-stream), open until the client leaves; heartbeats as comments; a final `dropped` event when the server ends it',
      410: 'The events after the given id are no longer kept; `X-Iotws-Oldest-Event-Id` names the oldest kept',
      503: 'Database unavailable, shutting down, or this instance serves EVENTS_MAX_SUBSCRIBERS already (TOO_MANY_SUBSCRIBERS); retry',
    },
    bodies: { 200: { text: 'text/event-stream' } },
  },
  {
    method: 'get',
    path: '/v1/devices',
    operationId: 'listDevices',
    summary:
      'The device registry, by device id: devices that connected and devices registered ahead. Filters (all in SQL, on indexes): `tag=key:value` (repeatable: every one), `accountId`, `online`',
    auth: true,
    scope: 'devices:read',
    query: deviceListQuery,
    responses: { 200: 'A page of devices' },
    bodies: { 200: out.devicePage },
  },
  {
    method: 'get',
    path: '/v1/devices/:deviceId',
    operationId: 'getDevice',
    summary: 'A device: registration, account, tags, online or not, its current and last session, the account changes its tokens made',
    auth: true,
    scope: 'devices:read',
    ...dev,
    responses: { 200: 'Device', 404: 'Not known (never connected nor registered), or of an account this key may not see' },
    bodies: { 200: out.device },
  },
  {
    method: 'put',
    path: '/v1/devices/:deviceId',
    operationId: 'putDevice',
    summary: 'Register a device, or replace its registration (`name`, `accountId`, `tags`; what is absent is cleared). A token naming another account later moves it',
    auth: true,
    scope: 'devices:write',
    ...dev,
    body: devicePutBody,
    example: { name: 'freezer 12', accountId: 'acme', tags: { site: 'berlin', model: 'f2' } },
    responses: { 201: 'Registered', 200: 'Registration replaced', 404: 'Exists in an account this key may not see' },
    bodies: { 201: out.device, 200: out.device },
  },
  {
    method: 'patch',
    path: '/v1/devices/:deviceId',
    operationId: 'patchDevice',
    summary: 'Change a registration with a JSON merge patch (RFC 7396): absent members are kept, `null` removes (`tags: {"site": null}` removes one tag)',
    auth: true,
    scope: 'devices:write',
    ...dev,
    body: devicePatchBody,
    bodyTypes: ['application/merge-patch+json', 'application/json'],
    example: { tags: { site: 'hamburg', firmware: null } },
    responses: { 200: 'Device', 404: 'Not known, or of an account this key may not see' },
    bodies: { 200: out.device },
  },
  {
    method: 'get',
    path: '/v1/devices/:deviceId/sessions',
    operationId: 'listDeviceSessions',
    summary: "A device's sessions, newest first",
    auth: true,
    scope: 'devices:read',
    ...dev,
    query: paginationQuery,
    responses: { 200: 'A page of sessions' },
    bodies: { 200: out.sessionPage },
  },
  {
    method: 'post',
    path: '/v1/devices/:deviceId/actuations',
    operationId: 'submitActuation',
    summary: 'Submit an actuation for a device (durable: committed before the answer)',
    auth: true,
    scope: 'actuations:write',
    ...dev,
    body: actuationBody,
    example: { ...command, ttlSeconds: 3600, collapseKey: 'led-1' },
    headers: [{ name: 'Idempotency-Key', description: 'The same key for the same device returns the original actuation (200)', schema: idempotencyKeyHeader }],
    responses: {
      202: 'Created',
      200: 'Existing actuation for this Idempotency-Key',
      404: 'An API key limited to accounts: the device is not in one of them (or not known); nothing was added',
      429: 'MAX_QUEUED_PER_DEVICE reached; nothing was added',
    },
    bodies: { 202: out.actuationSummary, 200: out.actuationSummary },
  },
  {
    method: 'get',
    path: '/v1/devices/:deviceId/actuations',
    operationId: 'listDeviceActuations',
    summary: "A device's actuations, newest first (cursor = seq)",
    auth: true,
    scope: 'actuations:read',
    ...dev,
    query: deviceActuationsQuery,
    responses: { 200: 'A page of actuations' },
    bodies: { 200: out.actuationPage },
  },
  {
    method: 'post',
    path: '/v1/actuations',
    operationId: 'submitActuations',
    summary: 'Submit up to 1,000 actuations; each item is validated and answered on its own',
    auth: true,
    scope: 'actuations:write',
    body: z.array(bulkActuationItem).min(1).max(1000),
    example: [{ deviceId: 'dev-1', ...command }, { deviceId: 'dev-2', ...command, idempotencyKey: 'order-7' }],
    responses: { 200: 'One result per item, in order' },
    bodies: { 200: out.bulkResults },
  },
  {
    method: 'get',
    path: '/v1/actuations/:id',
    operationId: 'getActuation',
    summary: 'An actuation: status, source, delivery and history',
    auth: true,
    scope: 'actuations:read',
    ...actuation,
    responses: { 200: 'Actuation', 404: 'Unknown' },
    bodies: { 200: out.actuationRecord },
  },
  {
    method: 'delete',
    path: '/v1/actuations/:id',
    operationId: 'cancelActuation',
    summary: 'Cancel a queued actuation',
    auth: true,
    scope: 'actuations:write',
    ...actuation,
    responses: { 200: 'Cancelled', 404: 'Unknown', 409: 'Not queued any more' },
    bodies: { 200: out.cancelledActuation },
  },
  {
    method: 'post',
    path: '/v1/dss/streams',
    operationId: 'createStream',
    summary: 'Add a DSS stream (the key is write-only)',
    auth: true,
    scope: 'dss:admin',
    body: streamCreateBody,
    example: { name: 'ovens', url: 'wss://stream.example.com/stream', streamKey: 'abcdef0123456789', enabled: false },
    responses: { 201: 'Stream' },
    bodies: { 201: out.stream },
  },
  { method: 'get', path: '/v1/dss/streams', operationId: 'listStreams', summary: 'DSS streams with their status', auth: true, scope: 'dss:admin', responses: { 200: 'Streams' }, bodies: { 200: out.streamList } },
  {
    method: 'get',
    path: '/v1/dss/streams/:id',
    operationId: 'getStream',
    summary: 'A DSS stream: connected, last event, last seq, counters',
    auth: true,
    scope: 'dss:admin',
    ...byId,
    responses: { 200: 'Stream', 404: 'Unknown' },
    bodies: { 200: out.stream },
  },
  {
    method: 'patch',
    path: '/v1/dss/streams/:id',
    operationId: 'updateStream',
    summary: 'Change a DSS stream',
    auth: true,
    scope: 'dss:admin',
    ...byId,
    body: streamUpdateBody,
    responses: { 200: 'Stream', 404: 'Unknown' },
    bodies: { 200: out.stream },
  },
  {
    method: 'get',
    path: '/v1/dss/streams/:id/events',
    operationId: 'listStreamEvents',
    summary: "The stream's recent events (DSS_EVENT_LOG_HOURS), newest first, filtered by dsn and property, paged by cursor",
    auth: true,
    scope: 'dss:admin',
    ...byId,
    query: eventLogQuery,
    responses: { 200: 'Events', 404: 'Unknown stream' },
    bodies: { 200: out.dssEventLogPage },
  },
  {
    method: 'get',
    path: '/v1/dss/devices/:dsn',
    operationId: 'getDssDeviceState',
    summary: "A device's last known state from DSS events: each property's latest value and the connectivity",
    auth: true,
    scope: 'dss:admin',
    params: dsnParam,
    responses: { 200: 'State', 404: 'No event of this device recorded' },
    bodies: { 200: out.dssDeviceState },
  },
  { method: 'delete', path: '/v1/dss/streams/:id', operationId: 'deleteStream', summary: 'Remove a DSS stream', auth: true, scope: 'dss:admin', ...byId, responses: { 204: 'Removed', 404: 'Unknown' } },
  {
    method: 'post',
    path: '/v1/rules',
    operationId: 'createRule',
    summary: 'Add a rule turning DSS events into actuations',
    auth: true,
    scope: 'dss:admin',
    body: ruleCreateBody,
    example: {
      name: 'too hot',
      match: { eventType: 'datapoint', propertyName: 'temperature', condition: { op: 'gt', value: 80 } },
      action: { deviceId: '{{dsn}}', componentId: 'fan', command: 'FAN.v1.0', params: [{ name: 'speed', value: 'high' }] },
    },
    responses: { 201: 'Rule' },
    bodies: { 201: out.rule },
  },
  { method: 'get', path: '/v1/rules', operationId: 'listRules', summary: 'Rules', auth: true, scope: 'dss:admin', responses: { 200: 'Rules' }, bodies: { 200: out.ruleList } },
  { method: 'get', path: '/v1/rules/:id', operationId: 'getRule', summary: 'A rule', auth: true, scope: 'dss:admin', ...byId, responses: { 200: 'Rule (an interval rule with its evaluations)', 404: 'Unknown' }, bodies: { 200: out.ruleDetail } },
  {
    method: 'patch',
    path: '/v1/rules/:id',
    operationId: 'updateRule',
    summary: 'Change a rule',
    auth: true,
    scope: 'dss:admin',
    ...byId,
    body: ruleUpdateBody,
    responses: { 200: 'Rule', 404: 'Unknown' },
    bodies: { 200: out.rule },
  },
  { method: 'delete', path: '/v1/rules/:id', operationId: 'deleteRule', summary: 'Remove a rule', auth: true, scope: 'dss:admin', ...byId, responses: { 204: 'Removed', 404: 'Unknown' } },
  {
    method: 'post',
    path: '/v1/jobs',
    operationId: 'createJob',
    summary:
      'Create a job: one actuation for each target device (a list, or a filter resolved when it starts; a `continuous` filter also targets devices that match later, until cancelled or `endAt`), released at `rollout.maxPerMinute`, aborted past `abort`',
    auth: true,
    scope: 'jobs:write',
    body: jobCreateBody,
    example: {
      name: 'defrost off',
      target: { tags: { model: 'f2' }, accountId: 'acme' },
      actuation: { componentId: 'defrost', command: 'OFF', params: [], ttlSeconds: 3600, ackTimeoutSeconds: 60 },
      rollout: { maxPerMinute: 6000 },
      abort: { failedPercent: 10, minCompleted: 100 },
      startAt: '2026-12-02T02:00:00Z',
    },
    responses: { 201: 'Job (scheduled)' },
    bodies: { 201: out.job },
  },
  {
    method: 'get',
    path: '/v1/jobs',
    operationId: 'listJobs',
    summary: 'Jobs, newest first (cursor = the last id of the previous page)',
    auth: true,
    scope: 'jobs:read',
    query: jobsQuery,
    responses: { 200: 'A page of jobs' },
    bodies: { 200: out.jobPage },
  },
  {
    method: 'get',
    path: '/v1/jobs/:id',
    operationId: 'getJob',
    summary: "A job: state, targets by their actuation's status (and not yet released), timeline",
    auth: true,
    scope: 'jobs:read',
    params: jobIdParam,
    responses: { 200: 'Job', 404: 'Unknown' },
    bodies: { 200: out.job },
  },
  {
    method: 'get',
    path: '/v1/jobs/:id/actuations',
    operationId: 'listJobActuations',
    summary: "A job's actuations by device id (cursor = the last device id of the previous page)",
    auth: true,
    scope: 'jobs:read',
    params: jobIdParam,
    query: jobActuationsQuery,
    responses: { 200: 'A page of actuations', 404: 'Unknown job' },
    bodies: { 200: out.actuationPage },
  },
  {
    method: 'post',
    path: '/v1/jobs/:id/cancel',
    operationId: 'cancelJob',
    summary: "Cancel a scheduled or running job: releasing stops, the job's queued actuations are cancelled",
    auth: true,
    scope: 'jobs:write',
    params: jobIdParam,
    responses: { 200: 'Job (cancelled)', 404: 'Unknown', 409: 'Already completed, cancelled or aborted' },
    bodies: { 200: out.job },
  },
  {
    method: 'post',
    path: '/v1/schedules',
    operationId: 'createSchedule',
    summary: 'Create a schedule: a cron expression (five fields) in a time zone; each occurrence creates one job',
    auth: true,
    scope: 'jobs:write',
    body: scheduleCreateBody,
    example: {
      name: 'nightly defrost off',
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      job: { name: 'defrost off', target: { tags: { model: 'f2' } }, actuation: { componentId: 'defrost', command: 'OFF', params: [] }, rollout: { maxPerMinute: 6000 } },
      enabled: true,
      misfireGraceSeconds: 300,
    },
    responses: { 201: 'Schedule, with its next five occurrences' },
    bodies: { 201: out.schedule },
  },
  { method: 'get', path: '/v1/schedules', operationId: 'listSchedules', summary: 'Schedules (at most 1,000, oldest first)', auth: true, scope: 'jobs:read', responses: { 200: 'Schedules' }, bodies: { 200: out.scheduleList } },
  {
    method: 'get',
    path: '/v1/schedules/:id',
    operationId: 'getSchedule',
    summary: 'A schedule: its next five occurrences and its last runs (the job each created, or skipped)',
    auth: true,
    scope: 'jobs:read',
    params: jobIdParam,
    responses: { 200: 'Schedule', 404: 'Unknown' },
    bodies: { 200: out.schedule },
  },
  {
    method: 'patch',
    path: '/v1/schedules/:id',
    operationId: 'updateSchedule',
    summary: 'Change a schedule (a new cron, time zone, or enabling again decides from now on)',
    auth: true,
    scope: 'jobs:write',
    params: jobIdParam,
    body: scheduleUpdateBody,
    responses: { 200: 'Schedule', 404: 'Unknown' },
    bodies: { 200: out.schedule },
  },
  { method: 'delete', path: '/v1/schedules/:id', operationId: 'deleteSchedule', summary: 'Remove a schedule (the jobs it created stay)', auth: true, scope: 'jobs:write', params: jobIdParam, responses: { 204: 'Removed', 404: 'Unknown' } },
  {
    method: 'post',
    path: '/v1/api-keys',
    operationId: 'createApiKey',
    summary: 'Create an API key; the answer holds its secret (`key`), shown this once. A caller grants only scopes it holds itself',
    auth: true,
    scope: 'keys:admin',
    body: apiKeyCreateBody,
    example: { name: 'billing', scopes: ['actuations:write', 'actuations:read'], expiresInDays: 90 },
    responses: { 201: 'Key, with its secret' },
    bodies: { 201: out.createdApiKey },
  },
  {
    method: 'get',
    path: '/v1/api-keys',
    operationId: 'listApiKeys',
    summary: 'API keys, revoked and expired ones too, oldest first (never their secrets)',
    auth: true,
    scope: 'keys:admin',
    responses: { 200: 'Keys' },
    bodies: { 200: out.apiKeyList },
  },
  {
    method: 'get',
    path: '/v1/api-keys/:id',
    operationId: 'getApiKey',
    summary: 'An API key (never its secret)',
    auth: true,
    scope: 'keys:admin',
    params: apiKeyIdParam,
    responses: { 200: 'Key', 404: 'Unknown' },
    bodies: { 200: out.apiKey },
  },
  {
    method: 'delete',
    path: '/v1/api-keys/:id',
    operationId: 'revokeApiKey',
    summary: 'Revoke an API key (every instance refuses it within 2 s; repeating it changes nothing)',
    auth: true,
    scope: 'keys:admin',
    params: apiKeyIdParam,
    responses: { 200: 'Revoked key', 404: 'Unknown' },
    bodies: { 200: out.apiKey },
  },
  {
    method: 'post',
    path: '/v1/devices/:deviceId/revoke-tokens',
    operationId: 'revokeDeviceTokens',
    summary:
      "Refuse the device's tokens issued (`iat`) before now, and its tokens without `iat`; a device connected with one is closed (1008) on whichever instance holds it",
    auth: true,
    scope: 'devices:write',
    ...dev,
    responses: { 200: 'Revoked: tokens issued before `revokedBefore` are refused', 404: 'A device the key\'s accounts do not see (as for an unknown device)' },
    bodies: { 200: out.deviceTokenRevocation },
  },
  {
    method: 'get',
    path: '/v1/audit',
    operationId: 'listAuditEntries',
    summary: 'The audit log: every mutating call (who, method, route, targets, status, request id, remote address, time), oldest first (cursor = id)',
    auth: true,
    scope: 'admin',
    query: auditQuery,
    responses: { 200: 'A page of audit entries' },
    bodies: { 200: out.auditPage },
  },
  {
    method: 'post',
    path: '/v1/webhooks',
    operationId: 'createWebhook',
    summary: 'Add a webhook endpoint: the change feed\'s events of the given types, POSTed and signed with the secret (write-only), from now on',
    auth: true,
    scope: 'webhooks:admin',
    body: webhookCreateBody,
    example: { url: 'https://hooks.example.invalid/iotws', events: ['actuation.acked', 'actuation.failed'], secret: 'whsec-0123456789abcdef', enabled: true },
    responses: { 201: 'Webhook (without its secret)' },
    bodies: { 201: out.webhook },
  },
  { method: 'get', path: '/v1/webhooks', operationId: 'listWebhooks', summary: 'Webhook endpoints', auth: true, scope: 'webhooks:admin', responses: { 200: 'Webhooks' }, bodies: { 200: out.webhookList } },
  {
    method: 'get',
    path: '/v1/webhooks/:id',
    operationId: 'getWebhook',
    summary: 'A webhook endpoint (never its secret)',
    auth: true,
    scope: 'webhooks:admin',
    ...webhookById,
    responses: { 200: 'Webhook', 404: 'Unknown' },
    bodies: { 200: out.webhook },
  },
  {
    method: 'patch',
    path: '/v1/webhooks/:id',
    operationId: 'updateWebhook',
    summary: 'Change a webhook endpoint; `enabled: true` re-enables one disabled by a 410 and retries its next event at once',
    auth: true,
    scope: 'webhooks:admin',
    ...webhookById,
    body: webhookUpdateBody,
    responses: { 200: 'Webhook', 404: 'Unknown' },
    bodies: { 200: out.webhook },
  },
  { method: 'delete', path: '/v1/webhooks/:id', operationId: 'deleteWebhook', summary: 'Remove a webhook endpoint and its deliveries', auth: true, scope: 'webhooks:admin', ...webhookById, responses: { 204: 'Removed', 404: 'Unknown' } },
  {
    method: 'get',
    path: '/v1/webhooks/:id/deliveries',
    operationId: 'listWebhookDeliveries',
    summary: "A webhook's delivery attempts by event, newest event first: attempts, last status code or error, next attempt (cursor = event id)",
    auth: true,
    scope: 'webhooks:admin',
    ...webhookById,
    query: deliveriesQuery,
    responses: { 200: 'A page of deliveries', 404: 'Unknown' },
    bodies: { 200: out.webhookDeliveryPage },
  },
  {
    method: 'post',
    path: '/v1/webhooks/:id/test',
    operationId: 'testWebhook',
    summary: 'POST a signed `webhook.test` event (id 0) to the endpoint now and answer with what it did (not recorded, outside the event order)',
    auth: true,
    scope: 'webhooks:admin',
    ...webhookById,
    responses: { 200: 'The receiver\'s answer', 404: 'Unknown' },
    bodies: { 200: out.webhookTestResult },
  },
];

/** The errors every route of a kind can give, besides those it names itself (404, 409, 429). */
const COMMON_ERRORS: Record<number, string> = {
  400: 'Invalid request: a path parameter, the query, the body or their encoding (the message names the field)',
  401: 'Missing or wrong credentials, or an API key that is unknown, revoked or expired',
  403: 'The API key lacks the scope this operation needs (the message names it)',
  429: 'RATE_LIMITED: the API key is over its rate limit; retry after `Retry-After` seconds',
  413: 'Request body larger than the limit (MAX_MESSAGE_BYTES; bulk: 2 MiB)',
  415: 'A body that is not JSON, or in a charset or Content-Encoding the server does not decode',
  500: 'Internal server error (a bug: never the answer to client input)',
  503: 'Database unavailable, or the server is shutting down; retry',
};

/** The error statuses a route can answer with. */
export function errorStatuses(route: RouteDoc): number[] {
  const own = Object.keys(route.responses).map(Number).filter((s) => s >= 400);
  const common = route.auth ? [400, 401, 403, 413, 415, 429, 500, 503] : [400, 500, 503];
  return [...new Set([...own, ...common])].sort((a, b) => a - b);
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  // `input`: what a client sends (defaults are optional there); `output`: what it receives.
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const errorRef = (status: number) => ({ $ref: `#/components/schemas/Error${status}` });

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorStatusesUsed = new Set<number>();
  for (const route of ROUTES) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const paramSchemas = (route.params ? jsonSchema(route.params).properties : {}) as Record<string, unknown>;
    const pathParams = [...route.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: paramSchemas[m[1]!] ?? { type: 'string' } }));
    const queryParams = route.query
      ? Object.entries((jsonSchema(route.query).properties ?? {}) as Record<string, unknown>).map(([name, schema]) => ({ name, in: 'query', required: false, schema }))
      : [];
    const headerParams = (route.headers ?? []).map((h) => ({
      name: h.name,
      in: 'header',
      required: false,
      description: h.description,
      schema: h.schema ? jsonSchema(h.schema) : { type: 'string' },
    }));
    const responses: Record<string, unknown> = {};
    for (const [status, description] of Object.entries(route.responses)) {
      if (Number(status) >= 400) continue;
      const body = route.bodies?.[Number(status)];
      if (body === undefined) responses[status] = { description };
      else if ('text' in body) responses[status] = { description, content: { [body.text]: { schema: { type: 'string' } } } };
      else responses[status] = { description, content: { 'application/json': { schema: jsonSchema(body as z.ZodType, 'output') } } };
    }
    for (const status of errorStatuses(route)) {
      errorStatusesUsed.add(status);
      // A route's own 429 (QUEUE_FULL) comes on top of the rate limit's.
      const own = route.responses[status];
      const description = own !== undefined && status === 429 && route.auth ? `${own}; or ${COMMON_ERRORS[429]}` : (own ?? COMMON_ERRORS[status] ?? 'Error');
      responses[String(status)] = {
        description,
        ...(status === 429 ? { headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } } } } : {}),
        content: { 'application/json': { schema: errorRef(status) } },
      };
    }
    (paths[path] ??= {})[route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.scope
        ? { description: `Requires the scope \`${route.scope}\` (or \`admin\`); HTTP Basic (the bootstrap administrator) holds every scope.`, 'x-required-scope': route.scope }
        : {}),
      ...(route.auth ? {} : { security: [] }),
      ...(pathParams.length + queryParams.length + headerParams.length > 0 ? { parameters: [...pathParams, ...queryParams, ...headerParams] } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: true,
              content: Object.fromEntries(
                (route.bodyTypes ?? ['application/json']).map((type) => [type, { schema: jsonSchema(route.body!), ...(route.example === undefined ? {} : { example: route.example }) }]),
              ),
            },
          }
        : {}),
      responses,
    };
  }
  const schemas = Object.fromEntries([...errorStatusesUsed].sort((a, b) => a - b).map((status) => [`Error${status}`, jsonSchema(out.errorResponse(status), 'output')]));
  return {
    openapi: '3.1.0',
    info: {
      title: 'iot-websocket-server',
      version: '0.1.0',
      description: 'Durable command delivery to IoT devices over WebSocket. Devices speak echo-protocol on the same port (see README).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'The server that serves this document' }],
    security: [{ bearer: [] }, { basic: [] }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key, `iotws_…`; each operation names the scope it needs (`x-required-scope`)' },
        basic: { type: 'http', scheme: 'basic', description: 'The bootstrap administrator (API_USERNAME/API_PASSWORD): every scope' },
      },
      schemas,
    },
    paths,
  };
}
