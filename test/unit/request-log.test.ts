import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { requestId, requestLog } from '../../src/http/request-log.js';
import { makeLogger } from '../../src/logger.js';
import { captureLog } from '../helpers/log-capture.js';

const servers: http.Server[] = [];
afterEach(() => servers.splice(0).forEach((s) => s.close()));

/** Two apps with their own loggers in one process: `req.log` is one prototype getter, each request's logger its own. */
async function serve(name: string) {
  const capture = captureLog();
  const app = Fastify({ logger: false, genReqId: requestId, serverFactory: (handler) => http.createServer(handler) });
  const log = requestLog(makeLogger({ level: 'info' }, capture.sink));
  // As api.ts calls it: at the start, and from a response listener once finished.
  app.addHook('onRequest', (request, reply, done) => {
    log.start(request, reply);
    reply.raw.once('finish', () => log.finished(request, reply.raw.statusCode, performance.now()));
    done();
  });
  app.get('/hello', async (request, reply) => {
    request.raw.log.info({ app: name }, 'handler says hello');
    return reply.code(404).send({ ok: false }); // 4xx: the request line is logged at info
  });
  await app.ready();
  const server = app.server;
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, capture };
}

describe('requestLog', () => {
  it("binds each request's id to req.log and to its request line, per app", async () => {
    const [a, b] = await Promise.all([serve('a'), serve('b')]);
    const first = await fetch(`${a.url}/hello`, { headers: { 'x-request-id': 'req-a-1' } });
    expect(first.headers.get('x-request-id')).toBe('req-a-1');
    await fetch(`${b.url}/hello`, { headers: { 'x-request-id': 'req-b-1' } });
    await fetch(`${a.url}/hello`, { headers: { 'x-request-id': 'req-a-2' } });
    const lines = (c: typeof a.capture) => c.json().map((l) => [l.msg, l.reqId, l.app]);
    // Checked to fail with the getter returning the first request's logger for every request.
    expect(lines(a.capture)).toEqual([
      ['handler says hello', 'req-a-1', 'a'],
      ['request completed', 'req-a-1', undefined],
      ['handler says hello', 'req-a-2', 'a'],
      ['request completed', 'req-a-2', undefined],
    ]);
    expect(lines(b.capture)).toEqual([
      ['handler says hello', 'req-b-1', 'b'],
      ['request completed', 'req-b-1', undefined],
    ]);
  });

  it('gives a new id for a missing or malformed X-Request-Id', async () => {
    const a = await serve('a');
    const ids = await Promise.all(['', 'has space', 'x'.repeat(129)].map(async (given) => (await fetch(`${a.url}/hello`, { headers: given ? { 'x-request-id': given } : {} })).headers.get('x-request-id')));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  it('leaves req.log undefined on requests that did not pass through it, and assignable', () => {
    const req = new http.IncomingMessage(null as never);
    expect(req.log).toBeUndefined();
    const logger = makeLogger({ level: 'silent' });
    req.log = logger;
    expect(req.log).toBe(logger);
  });
});
