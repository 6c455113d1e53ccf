/**
 * The actuations bench's second, harder reference: the same two POST routes and the same
 * `ws` gateway as bare-actuation-server.ts, on bare `node:http` (no express, no
 * body-parser): the path parsed by hand, the body read into one buffer and
 * `JSON.parse`d, the answer `JSON.stringify`d. Same frames, same answers, same body
 * limits; no database, no auth. What a request costs here is close to the floor of
 * Node's HTTP and `ws` on this machine.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';

const port = Number(process.env.PORT ?? 0);
const sockets = new Map<string, WebSocket>();
let seq = 0;

const wss = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  maxPayload: 64 * 1024,
  handleProtocols: (protocols) => (protocols.has('echo-protocol') ? 'echo-protocol' : false),
});

interface Item {
  deviceId?: unknown;
  componentId?: unknown;
  command?: unknown;
  params?: unknown;
}

/** Sends one actuation; the summary our API answers with, or undefined when the device is not connected. */
function push(deviceId: string, item: Item): Record<string, unknown> | undefined {
  const ws = sockets.get(deviceId);
  if (!ws || ws.readyState !== WebSocket.OPEN) return undefined;
  const id = crypto.randomUUID();
  const n = ++seq;
  ws.send(
    JSON.stringify({
      code: 1024,
      id,
      seq: n,
      content: {
        type: 'command',
        transport: 'ws',
        content: { accountId: null, deviceId, gatewayId: deviceId, componentId: item.componentId, command: item.command, params: item.params ?? [] },
      },
    }),
  );
  return { id, deviceId, seq: n, status: 'sent', createdAt: new Date(), expiresAt: null };
}

function answer(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads the whole body (bounded) and parses it; undefined (and a 400/413 answered) when it cannot. */
function readJson(req: http.IncomingMessage, res: http.ServerResponse, limit: number, then: (body: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      answer(res, 413, { code: 'PAYLOAD_TOO_LARGE' });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > limit) return;
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
    } catch {
      return answer(res, 400, { code: 'VALIDATION_FAILED' });
    }
    then(body);
  });
}

const DEVICE_ROUTE = /^\/v1\/devices\/([^/]+)\/actuations$/;

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'POST' && url === '/v1/actuations') {
    return readJson(req, res, 4 * 1024 * 1024, (body) => {
      const items = Array.isArray(body) ? (body as Item[]) : [];
      const results = items.map((item, index) => {
        const actuation = typeof item?.deviceId === 'string' ? push(item.deviceId, item) : undefined;
        return actuation ? { index, status: 202, actuation } : { index, status: 404, error: { code: 'NOT_CONNECTED', message: 'not connected' } };
      });
      answer(res, 200, { results });
    });
  }
  const match = req.method === 'POST' ? DEVICE_ROUTE.exec(url) : null;
  if (!match) return answer(res, 404, { code: 'NOT_FOUND' });
  const deviceId = decodeURIComponent(match[1]!);
  readJson(req, res, 64 * 1024, (body) => {
    const actuation = push(deviceId, body as Item);
    if (!actuation) return answer(res, 404, { code: 'NOT_CONNECTED' });
    answer(res, 202, actuation);
  });
});

server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => undefined);
    ws.once('message', (data) => {
      let deviceId: unknown;
      try {
        deviceId = (JSON.parse(data.toString()) as { deviceId?: unknown }).deviceId;
      } catch {
        return void ws.close(1008);
      }
      if (typeof deviceId !== 'string') return void ws.close(1008);
      sockets.set(deviceId, ws);
      ws.once('close', () => sockets.get(deviceId as string) === ws && sockets.delete(deviceId as string));
      ws.send(JSON.stringify({ code: 200, content: 'Subscribed to ws server' }));
    });
  });
});
server.headersTimeout = 10_000;
server.listen(port, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
