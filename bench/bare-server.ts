/**
 * The reference for `npm run bench -- connect`: a bare `ws` server with no auth and
 * no database. It accepts `echo-protocol` connections on 127.0.0.1:$PORT, answers
 * the first message with a 200 JSON and then just holds the socket — the least a
 * server can do for the same client exchange. Same `ws` options as the gateway
 * (noServer on a node:http server, no client tracking, same maxPayload).
 */
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.env.PORT ?? 0);
const ok = JSON.stringify({ code: 200, content: 'Subscribed to ws server' });

const wss = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  maxPayload: 64 * 1024,
  handleProtocols: (protocols) => (protocols.has('echo-protocol') ? 'echo-protocol' : false),
});

const server = http.createServer((_req, res) => {
  res.writeHead(404).end();
});
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => undefined);
    ws.once('message', () => ws.send(ok));
  });
});
server.listen(port, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
