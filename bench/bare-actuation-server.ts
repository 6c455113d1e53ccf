/**
 * The reference for `npm run bench -- actuations`: an express POST handler that
 * pushes straight to a `ws` socket, no database, no auth. Devices connect with
 * `echo-protocol`; the first message's `deviceId` is taken on trust and answered
 * with a 200. `POST /v1/devices/:deviceId/actuations` sends the same 1024 frame our
 * gateway sends and answers 202; `POST /v1/actuations` does that for each item of
 * an array and answers `{results:[{index,status,actuation|error}]}`. Acks are
 * parsed by `ws` and ignored. Same `ws` options and body limits as our server.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import express from 'express';
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

const app = express();
app.disable('x-powered-by');
app.post('/v1/devices/:deviceId/actuations', express.json({ limit: 64 * 1024 }), (req, res) => {
  const actuation = push(req.params.deviceId, req.body as Item);
  if (!actuation) return void res.status(404).json({ code: 'NOT_CONNECTED' });
  res.status(202).json(actuation);
});
app.post('/v1/actuations', express.json({ limit: 4 * 1024 * 1024 }), (req, res) => {
  const items = Array.isArray(req.body) ? (req.body as Item[]) : [];
  const results = items.map((item, index) => {
    const actuation = typeof item?.deviceId === 'string' ? push(item.deviceId, item) : undefined;
    return actuation ? { index, status: 202, actuation } : { index, status: 404, error: { code: 'NOT_CONNECTED', message: 'not connected' } };
  });
  res.status(200).json({ results });
});

const server = http.createServer(app);
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
