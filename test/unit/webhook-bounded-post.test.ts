/**
 * `boundedPost` against real HTTP servers on 127.0.0.1: the limits of one outgoing
 * webhook request, and the held endpoint's kept-alive connection (one, reused; dropped
 * after an answer not read to its end or a timeout). The same limits seen through the
 * sender and the database are in test/integration/webhooks*.test.ts.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { boundedPost, makeConnection, type PostOptions } from '../../src/webhooks/bounded-post.js';
import { eventually, within } from '../helpers/eventually.js';

interface Receiver {
  url: string;
  /** TCP connections accepted so far. */
  connections: () => number;
  requests: http.IncomingMessage[];
  bodies: string[];
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function receiver(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Receiver> {
  let connections = 0;
  const requests: http.IncomingMessage[] = [];
  const bodies: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      answer(req, res);
    });
  });
  server.on('connection', (_socket: Socket) => connections++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?x=1`, connections: () => connections, requests, bodies };
}

const noContent = (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(204).end();

function post(url: string, extra: Partial<PostOptions> = {}) {
  return boundedPost({ url, body: '{"id":1}', headers: { 'x-iotws-event-id': '1' }, timeoutMs: 5_000, allowPrivate: true, ...extra });
}

describe('boundedPost', () => {
  it('POSTs the body with its headers to the path and query; sequential POSTs share one connection', async () => {
    const r = await receiver(noContent);
    const connection = makeConnection({ allowPrivate: true, timeoutMs: 5_000 });
    try {
      for (let i = 0; i < 3; i++) expect(await post(r.url, { connection })).toEqual({ ok: true, statusCode: 204 });
    } finally {
      connection.destroy();
    }
    expect(r.connections()).toBe(1);
    expect(r.requests[0]).toMatchObject({ method: 'POST', url: '/hook?x=1' });
    expect(r.requests[0]!.headers).toMatchObject({ 'content-type': 'application/json', 'user-agent': 'iot-websocket-server-webhooks', 'x-iotws-event-id': '1', 'content-length': '8' });
    expect(r.bodies).toEqual(['{"id":1}', '{"id":1}', '{"id":1}']);
  });

  it('reads at most 64 KB of an endless body: the status is the answer, and the connection is dropped', async () => {
    // Checked: without the cap (reading to the end) the first POST ends in the timeout.
    const r = await receiver((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 'x');
      const pump = () => {
        while (res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    });
    const connection = makeConnection({ allowPrivate: true, timeoutMs: 5_000 });
    try {
      expect(await post(r.url, { connection })).toEqual({ ok: true, statusCode: 200 });
      expect(await post(r.url, { connection })).toEqual({ ok: true, statusCode: 200 });
    } finally {
      connection.destroy();
    }
    expect(r.connections()).toBe(2);
  });

  it('the timeout covers the body: headers and then silence end in a timeout, and the next POST gets a new connection', async () => {
    let stall = true;
    const r = await receiver((_req, res) => {
      if (!stall) return void res.writeHead(204).end();
      res.writeHead(200, { 'content-length': '100' });
      res.write('x'); // and never the rest
    });
    const connection = makeConnection({ allowPrivate: true, timeoutMs: 300 });
    try {
      expect(await post(r.url, { connection, timeoutMs: 300 })).toEqual({ ok: false, error: 'timeout: no complete answer within 300 ms' });
      stall = false;
      expect(await post(r.url, { connection, timeoutMs: 300 })).toEqual({ ok: true, statusCode: 204 });
    } finally {
      connection.destroy();
    }
    expect(r.connections()).toBe(2);
  });

  it('follows no redirect: a 302 is the answer', async () => {
    const target = await receiver(noContent);
    const r = await receiver((_req, res) => res.writeHead(302, { location: target.url }).end());
    expect(await post(r.url)).toEqual({ ok: false, statusCode: 302, error: 'HTTP 302' });
    expect(target.requests).toHaveLength(0);
  });

  it('the shutdown signal aborts a request in flight at once, as a connection error', async () => {
    const r = await receiver(() => {}); // never answers
    const aborter = new AbortController();
    const connection = makeConnection({ allowPrivate: true, timeoutMs: 60_000, signal: aborter.signal });
    try {
      const pending = post(r.url, { connection, timeoutMs: 60_000 });
      await eventually(() => r.bodies.length, (n) => n === 1);
      aborter.abort();
      const result = await within('the aborted POST', pending, 5_000);
      expect(result).toMatchObject({ ok: false, error: expect.stringMatching(/^connection error: /) });
      // And none starts after it.
      expect(await post(r.url, { connection })).toEqual({ ok: false, error: 'connection error: aborted (shutting down)' });
    } finally {
      connection.destroy();
    }
    expect(r.bodies).toHaveLength(1);
  });

  it('unless allowPrivate, refuses a name resolving to loopback where it connects, and a loopback literal before', async () => {
    const r = await receiver(noContent);
    const port = new URL(r.url).port;
    const byName = await post(`http://localhost:${port}/hook`, { allowPrivate: false });
    expect(byName).toMatchObject({ ok: false, refused: true, error: expect.stringMatching(/^destination localhost \((127\.0\.0\.1|::1)\) is in a loopback/) });
    expect(await post(r.url, { allowPrivate: false })).toMatchObject({ ok: false, refused: true, error: expect.stringMatching(/^destination 127\.0\.0\.1 \(127\.0\.0\.1\)/) });
    // Through a held endpoint's connection as well (its lookup is the guard's).
    const connection = makeConnection({ allowPrivate: false, timeoutMs: 5_000 });
    try {
      expect(await post(`http://localhost:${port}/hook`, { allowPrivate: false, connection })).toMatchObject({ ok: false, refused: true });
    } finally {
      connection.destroy();
    }
    expect(r.connections()).toBe(0);
    expect(await post(`http://localhost:${port}/hook`)).toEqual({ ok: true, statusCode: 204 });
  });

  it('a refused connection is a connection error', async () => {
    const r = await receiver(noContent);
    const url = r.url;
    const server = servers.pop()!;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    expect(await post(url)).toMatchObject({ ok: false, error: expect.stringMatching(/^connection error: ECONNREFUSED/) });
  });
});
