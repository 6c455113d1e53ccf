/**
 * Experiment (not wired into `npm run bench`): in-process timings of small pieces of the
 * request path, each against what it replaced or was compared with (issue 12).
 *
 *   npx tsx bench/experiments/request-path-micro.ts
 *
 * - ids: `uuid`'s v7 (16 random bytes from the OS per id) against src/actuations/actuation-ids.ts;
 * - `req.log`: an `Object.defineProperty` getter on each request object (request-log.ts
 *   before) against one getter on the prototype reading a symbol field (now);
 * - prom-client: `inc`/`observe` with a labels object against cached label children (not kept: no gain);
 * - zod: the single POST's params and body validation; the 1024 frame's serialization.
 * - later (README, issue 12, "Fewer objects and serializations"): the frame as `JSON.stringify`
 *   of its object (before) against `actuationMessage` (text around each value's own
 *   `JSON.stringify`, now); a bulk answer of 1,000 results by `JSON.stringify` against
 *   `bulkResultsJson`; a bulk item's `NewActuation` by spreads against field by field; SHA-256
 *   of the Basic credentials by a `Hash` object against `crypto.hash`.
 * Each is run three times; the last is printed (JIT warm). Absolute ns move with the machine's load.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import client from 'prom-client';
import { v7 } from 'uuid';
import { actuationId } from '../../src/actuations/actuation-ids.js';
import { actuationMessage } from '../../src/gateway/protocol.js';
import { actuationBody, bulkActuationItem, deviceIdParam } from '../../src/http/schemas.js';
import { bulkResultsJson, type BulkResult } from '../../src/http/serializers.js';
import { validate } from '../../src/http/validate.js';

function time(name: string, n: number, fn: () => void): void {
  let ns = 0;
  for (let round = 0; round < 3; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    ns = Number(process.hrtime.bigint() - started) / n;
  }
  process.stdout.write(`${name.padEnd(58)} ${ns.toFixed(0).padStart(7)} ns\n`);
}

time('id: uuid v7', 300_000, () => void v7());
time('id: actuationId (pooled random buffer)', 300_000, () => void actuationId());

const socket = new net.Socket();
let sink = 0;
time('req.log: Object.defineProperty per request', 100_000, () => {
  const req = new http.IncomingMessage(socket) as unknown as Record<string, unknown>;
  let child: object | undefined;
  Object.defineProperty(req, 'perRequestLog', { get: () => (child ??= {}), configurable: true });
  req.id = 'x';
  sink += req.headers ? 1 : 0;
});
const BASE = Symbol('base');
time('req.log: prototype getter, logger in a symbol field', 100_000, () => {
  const req = new http.IncomingMessage(socket) as unknown as Record<string | symbol, unknown>;
  req[BASE] = sink;
  req.id = 'x';
  sink += req.headers ? 1 : 0;
});

const registers = [new client.Registry()];
const labelNames = ['route', 'method', 'status_class'] as const;
const counter = new client.Counter({ name: 'c', help: 'c', labelNames, registers });
const histogram = new client.Histogram({ name: 'h', help: 'h', labelNames, registers });
time('metrics: inc + observe with a labels object', 200_000, () => {
  const labels = { route: '/v1/devices/:deviceId/actuations', method: 'POST', status_class: '2xx' };
  counter.inc(labels);
  histogram.observe(labels, 0.002);
});
const children = new Map<string, { c: ReturnType<typeof counter.labels>; h: ReturnType<typeof histogram.labels> }>();
time('metrics: cached label children', 200_000, () => {
  const key = '/v1/devices/:deviceId/actuations POST 2xx';
  let child = children.get(key);
  if (!child) children.set(key, (child = { c: counter.labels('/v1/devices/:deviceId/actuations', 'POST', '2xx'), h: histogram.labels('/v1/devices/:deviceId/actuations', 'POST', '2xx') }));
  child.c.inc();
  child.h.observe(0.002);
});

time('zod: params + body of a single POST (validate)', 200_000, () => {
  validate(deviceIdParam, { deviceId: 'bench-device-1' }, 'params');
  validate(actuationBody, { componentId: 'bench', command: 'set', params: [{ name: 't', value: 1733100000000.123 }] });
});
time('frame: actuationMessage', 200_000, () => {
  const command = { accountId: null, deviceId: 'bench-device-1', gatewayId: 'bench-device-1', componentId: 'bench', command: 'set', params: [{ name: 't', value: 1 }] };
  sink += actuationMessage('01a23526-9a2b-75a1-b46c-0ffd195bc871', command, 5).length;
});

const frameCommand = { accountId: null, deviceId: 'bench-device-1', gatewayId: 'bench-device-1', componentId: 'bench', command: 'set', params: [{ name: 't', value: 1 }] };
time('frame: JSON.stringify of the message object (before)', 200_000, () => {
  const c = { ...frameCommand, accountId: frameCommand.accountId ?? null };
  const message = { code: 1024, id: '01a23526-9a2b-75a1-b46c-0ffd195bc871', seq: 5, content: { type: 'command', transport: 'ws', content: { accountId: c.accountId, deviceId: c.deviceId, gatewayId: c.gatewayId, componentId: c.componentId, command: c.command, params: c.params } } };
  sink += JSON.stringify(message).length;
});
time('frame: actuationMessage, accountId passed (now)', 200_000, () => {
  sink += actuationMessage('01a23526-9a2b-75a1-b46c-0ffd195bc871', frameCommand, 5, frameCommand.accountId ?? null).length;
});

// One bulk answer: 1,000 results of one batch (one createdAt, one expiresAt).
const createdAt = new Date(1733270000000);
const expiresAt = new Date(1733356400000);
const results: BulkResult[] = Array.from({ length: 1000 }, (_, i) => ({
  index: i,
  status: 202,
  actuation: { id: '01a23526-9a2b-75a1-b46c-0ffd195bc871', deviceId: `bench-device-${i}`, seq: i + 1, status: 'sent', createdAt: new Date(createdAt.getTime()), expiresAt: new Date(expiresAt.getTime()) },
}));
time('bulk answer of 1,000 items: JSON.stringify (before)', 300, () => void (sink += JSON.stringify({ results }).length));
time('bulk answer of 1,000 items: bulkResultsJson (now)', 300, () => void (sink += bulkResultsJson({ results }).length));

const item = bulkActuationItem.parse({ deviceId: 'bench-device-1', componentId: 'bench', command: 'set', params: [{ name: 't', value: 1 }] });
const source = { kind: 'rest' as const, caller: 'admin', requestId: 'r-1' };
/** Kept past each call, so that the object is really made (not optimized away). */
let kept: unknown;
time('bulk item: rest + spread into NewActuation (before)', 300_000, () => {
  const { deviceId, idempotencyKey, ...body } = item;
  kept = { ...body, deviceId, idempotencyKey, source: { kind: 'rest', caller: 'admin', requestId: 'r-1' } };
});
time('bulk item: NewActuation field by field (now)', 300_000, () => {
  kept = { deviceId: item.deviceId, componentId: item.componentId, command: item.command, params: item.params, accountId: item.accountId, gatewayId: item.gatewayId, ttlSeconds: item.ttlSeconds, ackTimeoutSeconds: item.ackTimeoutSeconds, collapseKey: item.collapseKey, idempotencyKey: item.idempotencyKey, source };
});

time('basic auth: SHA-256 by createHash (before)', 200_000, () => void (sink += crypto.createHash('sha256').update('admin:some-password').digest().length));
time('basic auth: SHA-256 by crypto.hash (now)', 200_000, () => void (sink += crypto.hash('sha256', 'admin:some-password', 'buffer').length));
process.stdout.write(sink > 0 && kept !== undefined ? '' : '\n');
