/**
 * The OpenAPI 3.1 description of the REST API, generated from the same zod schemas
 * that validate requests (zod's JSON Schema output is draft 2020-12, which 3.1 uses).
 * `test/integration/openapi.test.ts` checks that every express route is described,
 * that every described body is validated, and that each example is accepted.
 */
import { z } from 'zod';
import { ruleCreateBody, ruleUpdateBody, streamCreateBody, streamUpdateBody } from '../dss/schemas.js';
import { idParam } from '../dss/schemas.js';
import * as out from './response-schemas.js';
import { apiKeyCreateBody, apiKeyIdParam } from '../keys/schemas.js';
import type { Scope } from '../keys/scopes.js';
import { deliveriesQuery, webhookCreateBody, webhookIdParam, webhookUpdateBody } from '../webhooks/schemas.js';
import { actuationBody, actuationIdParam, bulkActuationItem, deviceActuationsQuery, deviceIdParam, devicesQuery, idempotencyKeyHeader, paginationQuery } from './schemas.js';

type Method = 'get' | 'post' | 'patch' | 'delete';

export interface RouteDoc {
  method: Method;
  /** Express-style path (`:param`). */
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
    path: '/v1/devices',
    operationId: 'listDevices',
    summary: 'Devices known from their sessions, by device id; `online=true` for connected ones',
    auth: true,
    scope: 'devices:read',
    query: devicesQuery,
    responses: { 200: 'A page of devices' },
    bodies: { 200: out.devicePage },
  },
  {
    method: 'get',
    path: '/v1/devices/:deviceId',
    operationId: 'getDevice',
    summary: 'A device: online or not, its current and last session',
    auth: true,
    scope: 'devices:read',
    ...dev,
    responses: { 200: 'Device', 404: 'Never connected' },
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
    responses: { 202: 'Created', 200: 'Existing actuation for this Idempotency-Key', 429: 'MAX_QUEUED_PER_DEVICE reached; nothing was added' },
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
  { method: 'get', path: '/v1/rules/:id', operationId: 'getRule', summary: 'A rule', auth: true, scope: 'dss:admin', ...byId, responses: { 200: 'Rule', 404: 'Unknown' }, bodies: { 200: out.rule } },
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
  413: 'Request body larger than the limit (MAX_MESSAGE_BYTES; bulk: 2 MiB)',
  415: 'A body that is not JSON, or in a charset or Content-Encoding the server does not decode',
  500: 'Internal server error (a bug: never the answer to client input)',
  503: 'Database unavailable, or the server is shutting down; retry',
};

/** The error statuses a route can answer with. */
export function errorStatuses(route: RouteDoc): number[] {
  const own = Object.keys(route.responses).map(Number).filter((s) => s >= 400);
  const common = route.auth ? [400, 401, 403, 413, 415, 500, 503] : [400, 500, 503];
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
      const description = route.responses[status] ?? COMMON_ERRORS[status] ?? 'Error';
      responses[String(status)] = { description, content: { 'application/json': { schema: errorRef(status) } } };
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
        ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body), ...(route.example === undefined ? {} : { example: route.example }) } } } }
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
