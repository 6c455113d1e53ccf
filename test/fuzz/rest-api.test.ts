/**
 * Fuzzing the REST API (fast-check) over raw HTTP against the real server and database.
 * The routes come from the OpenAPI document: for every operation, path parameters
 * (unicode edge cases, U+0000, lone surrogates, bad percent-encoding), query strings,
 * headers (Content-Type and charset, Content-Encoding, Idempotency-Key, credentials)
 * and bodies (the operation's example with a field replaced by anything, any JSON,
 * deeply nested JSON, text that is not JSON, bodies over the limit, compressed bodies).
 *
 * Properties: never a 500; every answer to an operation is one the document declares
 * for it, with a body that matches the declared schema (errors in the catalogue's shape);
 * an answer to a request no operation matches is a catalogue error; a declared
 * Content-Length over the limit is answered 413 at once; the server stays up.
 * Seed and run count: see fuzz-options.ts.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_ERRORS } from '../../src/http/errors.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { checkAgainstDocument, operationOf } from '../helpers/openapi-check.js';
import { TEST_CREDENTIALS, useTestServer } from '../helpers/server.js';
import { deepJsonText, edgeJson, edgeString, runs, wrongType, fuzzTimeout } from './fuzz-options.js';

const MAX_BODY = 8_192;
// DSS off: a fuzzed stream URL must not make the server connect anywhere.
const t = useTestServer({ MAX_MESSAGE_BYTES: String(MAX_BODY), DSS_ENABLED: 'false' });

const AUTH = 'Basic ' + Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64');
// A connection per request: a hang-up is then the server's doing, never a reused socket it had closed.
const agent = new http.Agent({ keepAlive: false });

interface Answer {
  status: number;
  contentType: string | null;
  body: string;
}

function send(method: string, path: string, headers: Record<string, string>, body?: Buffer, timeoutMs = 10_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // Content-Length always given: Node's client sends a GET's body unframed otherwise.
    const framed = body === undefined ? headers : { ...headers, 'content-length': String(body.length) };
    const req = http.request({ host: '127.0.0.1', port: t.server.port, method, path, headers: framed, agent }, (res) => {
      // The change feed (GET /v1/events) answers a stream that never ends: its headers are the answer.
      if (res.headers['content-type']?.startsWith('text/event-stream')) {
        resolve({ status: res.statusCode!, contentType: res.headers['content-type'], body: '' });
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

type Op = { method: string; path: string; operationId: string; example?: unknown; hasBody: boolean; queryNames: string[] };
const doc = openApiDocument() as {
  paths: Record<string, Record<string, { operationId: string; parameters?: { name: string; in: string }[]; requestBody?: { content: Record<string, { example?: unknown }> } }>>;
};
const OPS: Op[] = Object.entries(doc.paths).flatMap(([path, ops]) =>
  Object.entries(ops).map(([method, op]) => ({
    method: method.toUpperCase(),
    path,
    operationId: op.operationId,
    example: op.requestBody?.content['application/json']?.example,
    hasBody: op.requestBody !== undefined,
    queryNames: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
  })),
);

/** Ids that exist, so that fuzzed requests also reach rows (200, 409), not only 404s. */
const real: { actuation: string; stream: string; rule: string } = { actuation: '', stream: '', rule: '' };
beforeAll(async () => {
  const a = await t.server.api('/v1/devices/fz-rest/actuations', { method: 'POST', json: { componentId: 'c', command: 'x' } });
  real.actuation = ((await a.json()) as { id: string }).id;
  const s = await t.server.api('/v1/dss/streams', { method: 'POST', json: { name: 'fz', url: 'ws://127.0.0.1:9/stream', streamKey: 'fuzz-key-0123456789', enabled: false } });
  real.stream = ((await s.json()) as { id: string }).id;
  const r = await t.server.api('/v1/rules', {
    method: 'POST',
    json: { name: 'fz', match: { eventType: 'datapoint' }, action: { deviceId: 'd', componentId: 'c', command: 'x' } },
  });
  real.rule = ((await r.json()) as { id: string }).id;
});

/** Percent-encodes any string; a lone surrogate becomes the (invalid) UTF-8 of a surrogate, %ED%A0%80. */
function encodeLoose(s: string): string {
  return [...s].map((ch) => (ch.isWellFormed() ? encodeURIComponent(ch) : '%ED%A0%80')).join('');
}

/** What goes into a path segment: already encoded text (ASCII), from good values to broken escapes. */
const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom('fz-rest', 'REAL_ACTUATION', 'REAL_STREAM', 'REAL_RULE', '00000000-0000-4000-8000-000000000000') },
  { weight: 3, arbitrary: edgeString(300).map(encodeLoose) },
  { weight: 2, arbitrary: fc.constantFrom('%', '%Z', '%ZZ', '%C0%AF', '%00', '%ED%A0%80', '%FF', '%E2%82', 'a%2Fb', '%2e%2e', '..', '.', '%25', 'x'.repeat(5_000)) },
);

const query: fc.Arbitrary<string> = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom('limit', 'cursor', 'online', 'status', 'x', 'limit[]', '__proto__'), edgeString(10).map(encodeLoose)),
      fc.oneof(segment, fc.constantFrom('1', '0', '-1', '501', '1e3', 'true', 'false', 'queued', '9999999999999999999999')),
    ),
    { maxLength: 3 },
  )
  .map((pairs) => (pairs.length === 0 ? '' : '?' + pairs.map(([k, v]) => `${k.replace(/[^\x21-\x7e]/g, '')}=${v}`).join('&')));

/** A body for the operation: its example with one field replaced, or anything at all. */
function bodyFor(op: Op): fc.Arbitrary<{ text: string; note: string }> {
  const example = op.example ?? (op.method === 'PATCH' ? { name: 'n' } : {});
  const mutated = fc.tuple(fc.oneof(edgeJson, wrongType), fc.nat(), fc.nat()).map(([value, i, j]) => {
    const copy = structuredClone(example) as unknown;
    const target = (Array.isArray(copy) ? copy[i % copy.length] : copy) as Record<string, unknown>;
    const keys = Object.keys(target);
    const key = keys.length === 0 ? 'x' : keys[j % keys.length]!;
    target[key] = value;
    return { text: JSON.stringify(copy), note: `example with ${key} replaced` };
  });
  return fc.oneof(
    { weight: 4, arbitrary: mutated },
    { weight: 2, arbitrary: edgeJson.map((v) => ({ text: JSON.stringify(v) ?? 'null', note: 'any JSON' })) },
    { weight: 1, arbitrary: deepJsonText.map((text) => ({ text, note: 'deep JSON' })) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((text) => ({ text, note: 'text' })) },
    { weight: 1, arbitrary: fc.constant({ text: JSON.stringify({ ...(example as object), pad: 'x'.repeat(MAX_BODY) }), note: 'over the limit' }) },
    { weight: 1, arbitrary: fc.constant({ text: JSON.stringify(example), note: 'the example' }) },
  );
}

const contentType = fc.constantFrom(
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/json; charset=x-unknown',
  'application/merge-patch+json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '',
  ';;;',
  undefined,
);
const contentEncoding = fc.constantFrom(undefined, undefined, undefined, 'gzip', 'gzip-broken', 'deflate', 'deflate-broken', 'br', 'compress', 'identity', 'x-unknown', 'gzip, gzip');

const requestCase = fc.constantFrom(...OPS).chain((op) =>
  fc.record({
    op: fc.constant(op),
    method: fc.oneof({ weight: 9, arbitrary: fc.constant(op.method) }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') }),
    segments: fc.array(segment, { minLength: 2, maxLength: 2 }),
    query,
    body: fc.option(bodyFor(op), { freq: op.hasBody ? 8 : 1, nil: undefined }),
    contentType,
    contentEncoding,
    idempotencyKey: fc.option(fc.oneof(edgeString(300).map((s) => s.replace(/[^\x20-\x7e\x80-\xff]/g, '')), fc.constantFrom('', ' ', 'k', 'x'.repeat(257))), { freq: 3, nil: undefined }),
    auth: fc.oneof({ weight: 12, arbitrary: fc.constant(AUTH) }, { weight: 1, arbitrary: fc.constantFrom('', 'Basic', 'Basic !!!', 'Bearer x', AUTH + 'x', `Basic ${Buffer.from('\u0000:\u0000').toString('base64')}`) }),
  }),
);

function encodeBody(text: string, encoding: string | undefined): Buffer {
  const raw = Buffer.from(text, 'utf8');
  if (encoding === 'gzip') return zlib.gzipSync(raw);
  if (encoding === 'deflate') return zlib.deflateSync(raw);
  if (encoding === 'gzip-broken' || encoding === 'deflate-broken') return Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08]), raw]);
  return raw;
}

function catalogueError(answer: Answer): string | null {
  let body: { error?: { code?: string; message?: unknown } };
  try {
    body = JSON.parse(answer.body) as typeof body;
  } catch {
    return `not JSON: ${answer.body.slice(0, 200)}`;
  }
  const code = body.error?.code as keyof typeof API_ERRORS | undefined;
  if (!code || !(code in API_ERRORS) || typeof body.error?.message !== 'string') return `not a catalogue error: ${answer.body.slice(0, 200)}`;
  if (API_ERRORS[code].status !== answer.status) return `${code} with status ${answer.status}`;
  return null;
}

describe('REST API fuzzing', () => {
  it('answers every fuzzed request with what the OpenAPI document declares, never 500', async () => {
    await fc.assert(
      fc.asyncProperty(requestCase, async (c) => {
        let i = 0;
        const path =
          c.op.path.replace(/\{\w+\}/g, () => {
            const s = c.segments[i++]!;
            return s.replace('REAL_ACTUATION', real.actuation).replace('REAL_STREAM', real.stream).replace('REAL_RULE', real.rule);
          }) + c.query;
        const headers: Record<string, string> = {};
        if (c.auth) headers.authorization = c.auth;
        let body: Buffer | undefined;
        if (c.body !== undefined) {
          body = encodeBody(c.body.text, c.contentEncoding);
          if (c.contentType !== undefined) headers['content-type'] = c.contentType;
          if (c.contentEncoding !== undefined) headers['content-encoding'] = c.contentEncoding.replace('-broken', '');
        }
        if (c.idempotencyKey !== undefined) headers['idempotency-key'] = c.idempotencyKey;
        const answer = await send(c.method, path, headers, body);
        if (answer.status >= 500 && answer.status !== 503) throw new Error(`${answer.status} for ${c.method} ${path}: ${answer.body.slice(0, 300)}`);
        if (c.method === 'HEAD') return;
        if (operationOf(c.method, path)) {
          const problems = checkAgainstDocument(c.method, path, answer.status, answer.contentType, answer.body);
          if (problems.length > 0) throw new Error(problems.join('\n'));
        } else if (c.method !== 'OPTIONS' || answer.status >= 400) {
          const problem = catalogueError(answer);
          if (problem) throw new Error(`${c.method} ${path} answered ${answer.status}: ${problem}`);
        }
      }),
      runs(1_500),
    );
    expect((await send('GET', '/healthz', {})).status).toBe(200);
  }, fuzzTimeout(120_000));

  it('answers a declared Content-Length over the limit with 413 at once, without waiting for the body', async () => {
    const postPaths = OPS.filter((o) => o.hasBody).map((o) => `${o.method} ${o.path.replace(/\{\w+\}/g, 'fz-rest')}`);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...postPaths), fc.oneof(fc.integer({ min: 2 * 1024 * 1024 + 1, max: 2 ** 40 }), fc.constant(10 ** 12)), async (target, length) => {
        const [method, path] = target.split(' ') as [string, string];
        const answer = await new Promise<Answer>((resolve, reject) => {
          const req = http.request(
            { host: '127.0.0.1', port: t.server.port, method, path, headers: { authorization: AUTH, 'content-type': 'application/json', 'content-length': String(length) } },
            (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (d: Buffer) => chunks.push(d));
              res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString() }));
            },
          );
          req.setTimeout(3_000, () => req.destroy(new Error(`no answer within 3 s to Content-Length ${length}`)));
          req.on('error', reject);
          req.write('{"a":'); // a body that has begun and would go on for `length` bytes
        });
        expect(answer.status).toBe(413);
        expect(catalogueError(answer)).toBeNull();
      }),
      runs(6, { endOnFailure: true }),
    );
    expect((await send('GET', '/healthz', {})).status).toBe(200);
  }, fuzzTimeout(60_000));
});
