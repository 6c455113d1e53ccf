/**
 * The OpenAPI 3.1 description of the REST API, generated from the same zod schemas
 * that validate requests (zod's JSON Schema output is draft 2020-12, which 3.1 uses).
 * `test/integration/openapi.test.ts` checks that every express route is described,
 * that every described body is validated, and that each example is accepted.
 */
import { z } from 'zod';
import { ruleCreateBody, ruleUpdateBody, streamCreateBody, streamUpdateBody } from '../dss/schemas.js';
import { API_ERRORS } from './errors.js';
import { actuationBody, bulkActuationItem, deviceActuationsQuery, devicesQuery, paginationQuery } from './schemas.js';

type Method = 'get' | 'post' | 'patch' | 'delete';

export interface RouteDoc {
  method: Method;
  /** Express-style path (`:param`). */
  path: string;
  summary: string;
  auth: boolean;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** A valid request body; the test submits it. */
  example?: unknown;
  headers?: { name: string; description: string }[];
  responses: Record<number, string>;
}

const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthz', summary: 'The process is up', auth: false, responses: { 200: 'Up' } },
  { method: 'get', path: '/readyz', summary: 'The database answers (Cloud Foundry health check)', auth: false, responses: { 200: 'Ready', 503: 'Database unavailable or shutting down' } },
  { method: 'get', path: '/v1/openapi.json', summary: 'This document', auth: false, responses: { 200: 'OpenAPI 3.1 document' } },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics (here unless METRICS_PORT is set)', auth: true, responses: { 200: 'Prometheus text format' } },
  { method: 'get', path: '/v1/devices', summary: 'Devices known from their sessions, by device id; `online=true` for connected ones', auth: true, query: devicesQuery, responses: { 200: '{items, nextCursor}' } },
  { method: 'get', path: '/v1/devices/:deviceId', summary: 'A device: online or not, its current and last session', auth: true, responses: { 200: 'Device', 404: 'Never connected' } },
  { method: 'get', path: '/v1/devices/:deviceId/sessions', summary: "A device's sessions, newest first", auth: true, query: paginationQuery, responses: { 200: '{items, nextCursor}' } },
  {
    method: 'post',
    path: '/v1/devices/:deviceId/actuations',
    summary: 'Submit an actuation for a device (durable: committed before the answer)',
    auth: true,
    body: actuationBody,
    example: { ...command, ttlSeconds: 3600, collapseKey: 'led-1' },
    headers: [{ name: 'Idempotency-Key', description: 'The same key for the same device returns the original actuation (200)' }],
    responses: { 202: 'Created {id, deviceId, seq, status, createdAt, expiresAt}', 200: 'Existing actuation for this Idempotency-Key', 400: 'Invalid', 429: 'MAX_QUEUED_PER_DEVICE reached' },
  },
  {
    method: 'get',
    path: '/v1/devices/:deviceId/actuations',
    summary: "A device's actuations, newest first (cursor = seq)",
    auth: true,
    query: deviceActuationsQuery,
    responses: { 200: '{items, nextCursor}' },
  },
  {
    method: 'post',
    path: '/v1/actuations',
    summary: 'Submit up to 1,000 actuations; each item is validated and answered on its own',
    auth: true,
    body: z.array(bulkActuationItem).min(1).max(1000),
    example: [{ deviceId: 'dev-1', ...command }, { deviceId: 'dev-2', ...command, idempotencyKey: 'order-7' }],
    responses: { 200: '{results: [{index, status, actuation | error}]}', 400: 'Not an array of 1 to 1,000 items' },
  },
  { method: 'get', path: '/v1/actuations/:id', summary: 'An actuation: status, source, delivery and history', auth: true, responses: { 200: 'Actuation', 404: 'Unknown' } },
  { method: 'delete', path: '/v1/actuations/:id', summary: 'Cancel a queued actuation', auth: true, responses: { 200: 'Cancelled', 404: 'Unknown', 409: 'Not queued any more' } },
  {
    method: 'post',
    path: '/v1/dss/streams',
    summary: 'Add a DSS stream (the key is write-only)',
    auth: true,
    body: streamCreateBody,
    example: { name: 'ovens', url: 'wss://stream.example.com/stream', streamKey: 'abcdef0123456789', enabled: false },
    responses: { 201: 'Stream', 400: 'Invalid' },
  },
  { method: 'get', path: '/v1/dss/streams', summary: 'DSS streams with their status', auth: true, responses: { 200: '{items}' } },
  { method: 'get', path: '/v1/dss/streams/:id', summary: 'A DSS stream: connected, last event, last seq, counters', auth: true, responses: { 200: 'Stream', 404: 'Unknown' } },
  { method: 'patch', path: '/v1/dss/streams/:id', summary: 'Change a DSS stream', auth: true, body: streamUpdateBody, responses: { 200: 'Stream', 400: 'Invalid', 404: 'Unknown' } },
  { method: 'delete', path: '/v1/dss/streams/:id', summary: 'Remove a DSS stream', auth: true, responses: { 204: 'Removed', 404: 'Unknown' } },
  {
    method: 'post',
    path: '/v1/rules',
    summary: 'Add a rule turning DSS events into actuations',
    auth: true,
    body: ruleCreateBody,
    example: {
      name: 'too hot',
      match: { eventType: 'datapoint', propertyName: 'temperature', condition: { op: 'gt', value: 80 } },
      action: { deviceId: '{{dsn}}', componentId: 'fan', command: 'FAN.v1.0', params: [{ name: 'speed', value: 'high' }] },
    },
    responses: { 201: 'Rule', 400: 'Invalid' },
  },
  { method: 'get', path: '/v1/rules', summary: 'Rules', auth: true, responses: { 200: '{items}' } },
  { method: 'get', path: '/v1/rules/:id', summary: 'A rule', auth: true, responses: { 200: 'Rule', 404: 'Unknown' } },
  { method: 'patch', path: '/v1/rules/:id', summary: 'Change a rule', auth: true, body: ruleUpdateBody, responses: { 200: 'Rule', 400: 'Invalid', 404: 'Unknown' } },
  { method: 'delete', path: '/v1/rules/:id', summary: 'Remove a rule', auth: true, responses: { 204: 'Removed', 404: 'Unknown' } },
];

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: Object.keys(API_ERRORS) }, message: { type: 'string' } },
    },
  },
};

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  // `input`: what a client sends (defaults are optional there).
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ROUTES) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const pathParams = [...route.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const queryParams = route.query
      ? Object.entries((jsonSchema(route.query).properties ?? {}) as Record<string, unknown>).map(([name, schema]) => ({ name, in: 'query', required: false, schema }))
      : [];
    const headerParams = (route.headers ?? []).map((h) => ({ name: h.name, in: 'header', required: false, description: h.description, schema: { type: 'string' } }));
    const responses: Record<string, unknown> = {};
    for (const [status, description] of Object.entries(route.responses)) {
      responses[status] = Number(status) >= 400 ? { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } : { description };
    }
    if (route.auth) responses['401'] = { description: 'Missing or wrong credentials', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    (paths[path] ??= {})[route.method] = {
      summary: route.summary,
      ...(route.auth ? {} : { security: [] }),
      parameters: [...pathParams, ...queryParams, ...headerParams],
      ...(route.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body), ...(route.example === undefined ? {} : { example: route.example }) } } } }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'iot-websocket-server',
      version: '0.1.0',
      description: 'Durable command delivery to IoT devices over WebSocket. Devices speak echo-protocol on the same port (see README).',
    },
    security: [{ basic: [] }],
    components: { securitySchemes: { basic: { type: 'http', scheme: 'basic' } }, schemas: { Error: errorSchema } },
    paths,
  };
}
