/**
 * The REST edge against hostile input, over real sockets against the real server and
 * database: what PostgreSQL cannot store, bad percent-encoding, charsets and
 * Content-Encodings, bodies that do not decode, a lying Content-Length. Each answer is a
 * documented 4xx with its catalogue code, never a 500, and the server keeps serving.
 *
 * How these were shown to guard something: with `findUnstorable` taken out of
 * `validate()` the U+0000/surrogate/depth cases answer 500 (the database refuses the
 * text, or JSON.stringify overflows); without `fromFrameworkError` the percent-encoding,
 * gzip/deflate/br and decoded-size 413 cases answer 500 (checked on the fastify port, by
 * making it return undefined). (The 413 for a declared Content-Length came
 * after the whole declared body under express; fastify's body reader refuses it at once
 * too, so `jsonBody`'s own check only adds the limit to the message.)
 */
import fs from 'node:fs';
import http from 'node:http';
import zlib from 'node:zlib';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { mint, testKeyPaths } from '../helpers/keys.js';
import { httpRequest, tcpRequest, type RawResponse } from '../helpers/raw-http.js';
import { TEST_CREDENTIALS, useTestServer } from '../helpers/server.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';

const t = useTestServer();
const authorization = 'Basic ' + Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64');
const actuation = { componentId: 'led', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

function send(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<RawResponse> {
  const all: Record<string, string> = { authorization, ...headers };
  if (body !== undefined && all['content-type'] === undefined) all['content-type'] = 'application/json';
  return httpRequest(t.server.port, method, path, { headers: all, body });
}

function expectError(res: RawResponse, status: number, code: string, fieldPrefix?: string): string {
  expect({ status: res.status, code: (res.json as { error?: { code?: string } })?.error?.code }, res.text).toEqual({ status, code });
  const message = (res.json as { error: { message: string } }).error.message;
  if (fieldPrefix !== undefined) expect(message.startsWith(`${fieldPrefix}`), message).toBe(true);
  return message;
}

/** Deeply nested arrays as JSON text: `[[[…]]]`. */
const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

describe('what PostgreSQL cannot store is a 400 naming the field', () => {
  it.each([
    ['U+0000 in componentId', JSON.stringify({ ...actuation, componentId: 'c\u0000' }), 'componentId:'],
    ['a lone surrogate in command', '{"componentId":"c","command":"\\ud800","params":[]}', 'command:'],
    ['U+0000 in a param value', JSON.stringify({ ...actuation, params: [{ name: 'p', value: 'v\u0000' }] }), 'params.0.value:'],
    ['U+0000 in a key inside a param value', JSON.stringify({ ...actuation, params: [{ name: 'p', value: { 'k\u0000': 1 } }] }), 'params.0.value.k\\u0000:'],
    ['a lone surrogate deep in a param value', `{"componentId":"c","command":"x","params":[{"name":"p","value":{"a":[1,"\\udfff"]}}]}`, 'params.0.value.a.1:'],
    ['a param value nested 5,000 arrays deep', `{"componentId":"c","command":"x","params":[{"name":"p","value":${nested(5000)}}]}`, 'params.0.value.0.0'],
    // JSON.parse reads 1e400 as Infinity, which would be stored (and sent) as null.
    ['a number beyond a double in a param value', '{"componentId":"c","command":"x","params":[{"name":"p","value":{"n":[-1e400]}}]}', 'params.0.value.n.0:'],
  ])('%s', async (_name, body, field) => {
    const message = expectError(await send('POST', '/v1/devices/edge-dev/actuations', body), 400, 'VALIDATION_FAILED', field);
    if (field.includes('0.0')) expect(message).toMatch(/nested deeper than 32 levels/);
    if (field.includes('.n.')) expect(message).toMatch(/finite number/);
  });

  it('in a path parameter, a query parameter and the Idempotency-Key', async () => {
    expectError(await send('POST', '/v1/devices/%00/actuations', JSON.stringify(actuation)), 400, 'VALIDATION_FAILED', 'deviceId:');
    expectError(await send('GET', '/v1/devices/a%00b'), 400, 'VALIDATION_FAILED', 'deviceId:');
    expectError(await send('GET', '/v1/devices?cursor=%00'), 400, 'VALIDATION_FAILED', 'cursor:');
    expectError(await send('GET', '/v1/devices/edge-dev/sessions?cursor=x%00'), 400, 'VALIDATION_FAILED', 'cursor:');
    expectError(await send('GET', '/v1/devices/edge-dev/actuations?status=%00'), 400, 'VALIDATION_FAILED', 'status:');
  });

  it('in DSS stream and rule names', async () => {
    const stream = { name: 'n\u0000', url: 'wss://127.0.0.1:1/stream', streamKey: 'abcdef0123456789' };
    expectError(await send('POST', '/v1/dss/streams', JSON.stringify(stream)), 400, 'VALIDATION_FAILED', 'name:');
    const rule = { name: 'r\ud800', match: { eventType: 'connectivity' }, action: { deviceId: 'd', componentId: 'c', command: 'x' } };
    expectError(await send('POST', '/v1/rules', JSON.stringify(rule)), 400, 'VALIDATION_FAILED', 'name:');
  });

  it('in a bulk submission, is that item\'s 400 and the others are accepted', async () => {
    const items = [
      { ...actuation, deviceId: 'bulk-1' },
      { ...actuation, deviceId: 'bulk-2', componentId: 'bad\u0000' },
      { ...actuation, deviceId: 'bulk-3', params: [{ name: 'deep', value: JSON.parse(nested(100)) }] },
      { ...actuation, deviceId: 'bulk\ud800' },
      { ...actuation, deviceId: 'bulk-5' },
    ];
    const res = await send('POST', '/v1/actuations', JSON.stringify(items));
    expect(res.status, res.text).toBe(200);
    const results = (res.json as { results: { index: number; status: number; error?: { code: string; message: string } }[] }).results;
    expect(results.map((r) => r.status)).toEqual([202, 400, 400, 400, 202]);
    expect(results[1]!.error).toEqual({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/^componentId:/) });
    expect(results[2]!.error).toEqual({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/^params\.0\.value\.0.*nested deeper/) });
    expect(results[3]!.error).toEqual({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/^deviceId:/) });
    const { rows } = await t.db.pool.query<{ device_id: string }>(`select device_id from actuations where device_id like 'bulk%' order by device_id`);
    expect(rows.map((r) => r.device_id)).toEqual(['bulk-1', 'bulk-5']);
  });
});

describe('a bulk item the database refuses', () => {
  it('is that item\'s 500 in the results, not the whole array\'s', async () => {
    // A real refusal from the real database, for one device only, past every check at the edge.
    await t.db.pool.query(`create function refuse_poison() returns trigger language plpgsql as $$
      begin if new.device_id like 'poison%' then raise exception 'poison item'; end if; return new; end $$`);
    await t.db.pool.query('create trigger refuse_poison before insert on actuations for each row execute function refuse_poison()');
    try {
      const res = await send('POST', '/v1/actuations', JSON.stringify([{ ...actuation, deviceId: 'poison-1' }]));
      expect(res.status, res.text).toBe(200);
      expect((res.json as { results: unknown[] }).results).toEqual([{ index: 0, status: 500, error: { code: 'INTERNAL', message: expect.any(String) } }]);
    } finally {
      await t.db.pool.query('drop trigger refuse_poison on actuations; drop function refuse_poison()');
    }
  });
});

describe('bad percent-encoding in a path is 400 MALFORMED_PATH', () => {
  it.each([
    ['DELETE', '/v1/rules/%'],
    ['GET', '/v1/actuations/%ZZ'],
    ['DELETE', '/v1/actuations/%C0%AF'],
    ['GET', '/v1/dss/streams/%E0%A4%A'],
    ['POST', '/v1/devices/%ED%A0%80/actuations'],
  ])('%s %s', async (method, path) => {
    expectError(await send(method, path, method === 'POST' ? JSON.stringify(actuation) : undefined), 400, 'MALFORMED_PATH');
  });
});

describe('routing edges (README, "HTTP edges")', () => {
  it('OPTIONS on a served path is 200 with Allow, after authentication; on an unknown path 404', async () => {
    const res = await send('OPTIONS', '/v1/devices/edge-dev');
    expect(res.status, res.text).toBe(200);
    expect(res.headers.allow).toBe('GET, HEAD, PATCH, PUT');
    expect(res.text).toBe('GET, HEAD, PATCH, PUT');
    expectError(await httpRequest(t.server.port, 'OPTIONS', '/v1/devices/edge-dev'), 401, 'UNAUTHORIZED');
    expectError(await send('OPTIONS', '/v1/no-such-thing'), 404, 'NOT_FOUND');
  });

  it('a path that does not percent-decode is 400 MALFORMED_PATH before authentication, with a request id', async () => {
    const res = await httpRequest(t.server.port, 'GET', '/%zz');
    expectError(res, 400, 'MALFORMED_PATH');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a GET body is not read: neither its Content-Type nor its JSON is refused', async () => {
    // node:http sends a GET body without Content-Length (so as the next request) unless told its length.
    const plain = await send('GET', '/v1/devices', 'not json at all', { 'content-type': 'text/plain', 'content-length': '15' });
    expect(plain.status, plain.text).toBe(200);
    expect((await send('GET', '/v1/devices', '{"broken":', { 'content-length': '10' })).status).toBe(200);
  });

  it('without a body, the Content-Type is not refused (415 needs a body)', async () => {
    const res = await httpRequest(t.server.port, 'POST', '/v1/devices/edge-dev/actuations', { headers: { authorization, 'content-type': 'text/plain', 'content-length': '0' } });
    expectError(res, 400, 'VALIDATION_FAILED');
  });

  it('HEAD of a GET route answers its status and headers without a body', async () => {
    const res = await send('HEAD', '/v1/devices');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.text).toBe('');
  });

  it('JSON must be an object or an array at the top; a body that fails to parse closes the connection', async () => {
    const keepAlive = { connection: 'keep-alive' };
    for (const body of ['"a string"', '5', 'null']) {
      const res = await send('POST', '/v1/devices/edge-dev/actuations', body, keepAlive);
      expectError(res, 400, 'MALFORMED_JSON');
      expect(res.headers.connection).toBe('close');
    }
    // A leading BOM is dropped, as body-parser did; a body that parses keeps the connection.
    const ok = await send('POST', '/v1/devices/edge-dev/actuations', '\ufeff' + JSON.stringify(actuation), keepAlive);
    expect(ok.status, ok.text).toBe(202);
    expect(ok.headers.connection).toBe('keep-alive');
  });

  it('paths are case-insensitive (parameters keep their case), ignore one trailing slash, decode %-escapes, and refuse duplicate slashes', async () => {
    expect((await send('GET', '/V1/DEVICES')).status).toBe(200);
    expect((await send('GET', '/v1/devices/')).status).toBe(200);
    expect((await send('GET', '/v1/%64evices')).status).toBe(200);
    expect(expectError(await send('GET', '/V1/Devices/Edge-Case-Dev'), 404, 'NOT_FOUND')).toBe('Device "Edge-Case-Dev" is not known');
    expectError(await send('GET', '//v1/devices'), 404, 'NOT_FOUND');
    expectError(await send('GET', '/v1//devices'), 404, 'NOT_FOUND');
  });
});

describe('stream URLs', () => {
  it.each(['wss://[', 'ws://', 'wss://a b/stream', 'not a url', 'wss://%zz/'])('a url that does not parse (%s) is 400 naming url', async (url) => {
    const res = await send('POST', '/v1/dss/streams', JSON.stringify({ name: 'bad-url', url, streamKey: 'abcdef0123456789' }));
    expectError(res, 400, 'VALIDATION_FAILED', 'url:');
  });

  it('never show the password of the URL userinfo, in any answer', async () => {
    const password = 'pa55-word-in-url-7a1f';
    const url = `wss://dss-user:${password}@127.0.0.1:1/stream`;
    const created = await send('POST', '/v1/dss/streams', JSON.stringify({ name: 'with-userinfo', url, streamKey: 'abcdef0123456789', enabled: false }));
    expect(created.status, created.text).toBe(201);
    const { id, url: shown } = created.json as { id: string; url: string };
    expect(shown).toBe('wss://dss-user:****@127.0.0.1:1/stream');
    const answers = [
      created,
      await send('GET', '/v1/dss/streams'),
      await send('GET', `/v1/dss/streams/${id}`),
      await send('PATCH', `/v1/dss/streams/${id}`, JSON.stringify({ name: 'with-userinfo-2' })),
      await send('PATCH', `/v1/dss/streams/${id}`, JSON.stringify({ url: `wss://other:${password}-2@127.0.0.1:1/s` })),
    ];
    for (const answer of answers) {
      expect(answer.status, answer.text).toBeLessThan(300);
      expect(answer.text).not.toContain(password);
      expect(answer.text).toContain(':****@127.0.0.1:1/');
    }
    // Stored as given: only the answers are redacted.
    const { rows } = await t.db.pool.query<{ url: string }>('select url from dss_streams where id = $1', [id]);
    expect(rows[0]!.url).toBe(`wss://other:${password}-2@127.0.0.1:1/s`);
  });
});

describe('bodies', () => {
  const body = JSON.stringify(actuation);

  it.each(['latin1', 'ISO-8859-1', 'utf-16', '"utf-16le"', 'x-unknown'])('charset=%s is 415 UNSUPPORTED_CHARSET', async (charset) => {
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', body, { 'content-type': `application/json; charset=${charset}` }), 415, 'UNSUPPORTED_CHARSET');
  });

  it('charset=utf-8 (any case) is accepted', async () => {
    const res = await send('POST', '/v1/devices/edge-dev/actuations', body, { 'content-type': 'application/json; charset=UTF-8' });
    expect(res.status, res.text).toBe(202);
  });

  it('a body that is not JSON is 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', body, { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it.each(['compress', 'x-unknown', 'zstd', 'gzip, br', 'identity;q=1'])('Content-Encoding: %s is 415 UNSUPPORTED_CONTENT_ENCODING', async (encoding) => {
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', body, { 'content-encoding': encoding }), 415, 'UNSUPPORTED_CONTENT_ENCODING');
  });

  it.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
    ['br', zlib.brotliCompressSync],
  ] as const)('a %s body is decoded; one that does not decode is 400 MALFORMED_BODY', async (encoding, compress) => {
    const ok = await send('POST', '/v1/devices/edge-dev/actuations', compress(Buffer.from(body)), { 'content-encoding': encoding });
    expect(ok.status, ok.text).toBe(202);
    const garbage = Buffer.from('this is not compressed at all, not even a little');
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', garbage, { 'content-encoding': encoding }), 400, 'MALFORMED_BODY');
    // Cut short: a valid start that ends too early.
    const cut = compress(Buffer.from(JSON.stringify({ ...actuation, params: [{ name: 'p', value: 'x'.repeat(2000) }] })));
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', cut.subarray(0, cut.length >> 1), { 'content-encoding': encoding }), 400, 'MALFORMED_BODY');
  });

  it('a compressed body over the limit once decoded is 413', async () => {
    const huge = zlib.gzipSync(Buffer.from(JSON.stringify({ ...actuation, params: [{ name: 'p', value: 'x'.repeat(200_000) }] })));
    expect(huge.length).toBeLessThan(t.server.config.maxMessageBytes);
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', huge, { 'content-encoding': 'gzip' }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('bad JSON is 400 MALFORMED_JSON', async () => {
    expectError(await send('POST', '/v1/devices/edge-dev/actuations', '{"componentId":'), 400, 'MALFORMED_JSON');
  });

  it('a declared Content-Length of 10^12 is 413 within 1 s, before the body is read, and the connection closes', async () => {
    const head = [
      'POST /v1/devices/edge-dev/actuations HTTP/1.1',
      `Host: 127.0.0.1:${t.server.port}`,
      `Authorization: ${authorization}`,
      'Content-Type: application/json',
      'Content-Length: 1000000000000',
    ].join('\r\n');
    const res = await tcpRequest(t.server.port, head, '{"componentId":"c",');
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(res.headers.connection).toBe('close');
    expect(res.elapsedMs).toBeLessThan(1_000);
  });

  it('a Content-Length just over the limit is 413 at once too; the bulk route has its larger limit', async () => {
    const limit = t.server.config.maxMessageBytes;
    const head = (path: string, length: number) =>
      [`POST ${path} HTTP/1.1`, 'Host: x', `Authorization: ${authorization}`, 'Content-Type: application/json', `Content-Length: ${length}`].join('\r\n');
    const over = await tcpRequest(t.server.port, head('/v1/devices/edge-dev/actuations', limit + 1), '[');
    expectError(over, 413, 'PAYLOAD_TOO_LARGE');
    expect(over.elapsedMs).toBeLessThan(1_000);
    // The same length is within the bulk limit: the server waits for the body (and we stop here).
    const bulk = await tcpRequest(t.server.port, head('/v1/actuations', limit + 1), '[', 1_000).catch((err: Error) => err);
    expect(bulk).toBeInstanceOf(Error);
    expect((bulk as Error).message).toMatch(/no complete response within 1000 ms/);
  });
});

describe("Node's own answers (documented in the README)", () => {
  it('431 for headers over 16 KiB, 400 for a request that is not HTTP', async () => {
    const big = await tcpRequest(t.server.port, ['GET /v1/devices HTTP/1.1', 'Host: x', `X-Filler: ${'a'.repeat(20_000)}`].join('\r\n'));
    expect(big.status).toBe(431);
    const garbage = await tcpRequest(t.server.port, 'GET /v1/devices HTTP/1.1\r\nHost: x\r\nContent-Length: twelve');
    expect(garbage.status).toBe(400);
    // (408 comes from requestTimeout/headersTimeout, checked by Node every 30 s: too slow for a test.)
  });
});

describe('kept-alive connections (README, "Operating it")', () => {
  // A client that reuses an idle connection just as the server closes it gets a reset for a
  // POST it cannot tell was received; the server must say how long it keeps one (the header),
  // and keep it that long. Checked to fail with server.keepAliveTimeout = 2_000 in app.ts (announced 2 s).
  it('announce the idle timeout in Keep-Alive and stay open for it', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = () =>
        new Promise<{ keepAlive: string | undefined; localPort: number | undefined }>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port: t.server.port, path: '/healthz', agent }, (res) => {
            const localPort = res.socket.localPort;
            res.resume();
            res.on('end', () => resolve({ keepAlive: res.headers['keep-alive'] as string | undefined, localPort }));
          });
          req.setTimeout(5_000, () => req.destroy(new Error('no answer within 5 s')));
          req.on('error', reject);
        });
      const first = await get();
      const announced = Number(/timeout=(\d+)/.exec(first.keepAlive ?? '')?.[1]);
      expect(announced, `Keep-Alive: ${first.keepAlive}`).toBeGreaterThanOrEqual(5);
      // Idle for most of what was announced (Node's agent itself lets go 1 s before it), then reused.
      await new Promise((resolve) => setTimeout(resolve, (announced - 1.5) * 1000));
      const second = await get();
      expect(second.localPort, 'the same connection was reused').toBe(first.localPort);
    } finally {
      agent.destroy();
    }
  }, 15_000);
});

describe('the server keeps serving', () => {
  it('a valid submission and a device still work after all of the above', async () => {
    const device = await connectAuthenticated(t.server.wsUrl, 'edge-after', mint('edge-after'));
    const res = await send('POST', '/v1/devices/edge-after/actuations', JSON.stringify(actuation));
    expect(res.status, res.text).toBe(202);
    expect((await device.next()).code).toBe(1024);
    device.close();
    await device.closed;
  });
});

describe('iotws_sessions_closed_total{code}', () => {
  it('counts close codes a device picks outside the documented set as "other"', async () => {
    const count = (text: string, code: string) => Number(new RegExp(`iotws_sessions_closed_total\\{code="${code}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const before = (await send('GET', '/metrics')).text;
    for (const code of [4321, 3999]) {
      const device = await connectAuthenticated(t.server.wsUrl, `close-${code}`, mint(`close-${code}`));
      device.connection.close(code, 'my own code');
      await device.closed;
    }
    const documented = await connectAuthenticated(t.server.wsUrl, 'close-1000', mint('close-1000'));
    documented.connection.close(1000);
    await documented.closed;
    const settled = (text: string) => count(text, 'other') === count(before, 'other') + 2 && count(text, '1000') === count(before, '1000') + 1;
    const metrics = await eventually(async () => (await send('GET', '/metrics')).text, settled);
    expect(settled(metrics), metrics).toBe(true);
    expect(metrics).not.toMatch(/code="4321"|code="3999"/);
  });
});

describe('device tokens at the gateway', () => {
  it('a validly signed token with a crit header, or without exp, gets 401 and 1008', async () => {
    const key = fs.readFileSync(testKeyPaths().privateKeyPath, 'utf8');
    const withCrit = jwt.sign({ sub: 'tok-crit' }, key, { algorithm: 'RS256', expiresIn: '1h', header: { alg: 'RS256', crit: ['exp'] } as jwt.JwtHeader });
    const noExp = jwt.sign({ sub: 'tok-noexp' }, key, { algorithm: 'RS256' });
    for (const [deviceId, token] of [['tok-crit', withCrit], ['tok-noexp', noExp]] as const) {
      const device = await connectDevice(t.server.wsUrl);
      device.send({ type: 'device', deviceId, deviceToken: token });
      expect(await device.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
      expect((await device.closed).code).toBe(1008);
    }
  });
});
