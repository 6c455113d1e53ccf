/**
 * A small DSS-compatible server for trying the whole flow on one machine and for
 * the tests: a real peer, not a mock.
 *
 * - `GET /stream?stream_key=K[&seq_start=N][&seq_end=M]` upgrades to a WebSocket
 *   (401 for an unknown key). Events with seq >= N already in K's log are sent
 *   first, then live ones; with seq_end the socket is closed (1000) once M was sent.
 * - Every `heartbeatMs` each socket gets `1|Z`; a socket that has not answered the
 *   previous one with `Z` is closed (4000) instead, as DSS does.
 * - Each key is one subscription with its own seq counter and event log.
 * - HTTP: `POST /streams/:key/events` (one event or an array, compact or in DSS
 *   shape; answers the assigned seqs), `POST /streams/:key/frames` (text body sent
 *   as-is as one message, for malformed frames), `GET /streams/:key/events`,
 *   `POST /streams/:key/disconnect`, `GET /stats`.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import type { Logger } from '../../logger.js';
import { HEARTBEAT_ANSWER, HEARTBEAT_FRAME, formatFrame } from '../frame-parser.js';
import { buildEvent, type EventInput } from './event-builders.js';

export interface DssSimulatorOptions {
  /** (Default: 0, any free port) */
  port?: number;
  /** (Default: 127.0.0.1) */
  host?: string;
  /** Accepted stream keys; more can be added with `addStreamKey`. */
  streamKeys: string[];
  /** Heartbeat interval; DSS uses 30 s. (Default: 30 000) */
  heartbeatMs?: number;
  logger?: Logger;
}

export interface SimulatorStats {
  connectionsOpen: number;
  connectionsTotal: number;
  rejectedKeys: number;
  heartbeatsSent: number;
  heartbeatsAnswered: number;
  closedForMissedHeartbeat: number;
  /** Every accepted connection's replay request, oldest first. */
  connections: { streamKey: string; seqStart: number | null; seqEnd: number | null; at: string }[];
}

export interface DssSimulator {
  port: number;
  /** `ws://host:port/stream`, the URL to configure a stream with. */
  streamUrl: string;
  httpUrl: string;
  addStreamKey(key: string): void;
  /** Appends events to the key's log with the next seqs and sends them to its live sockets. */
  emit(streamKey: string, inputs: EventInput | EventInput[]): Record<string, unknown>[];
  /** Sends `text` as one WebSocket message to each live socket of the key; not logged. Returns the socket count. */
  sendRaw(streamKey: string, text: string): number;
  events(streamKey: string): Record<string, unknown>[];
  stats(): SimulatorStats;
  /** Terminates the key's sockets (or all), as a network failure would. */
  disconnect(streamKey?: string): number;
  close(): Promise<void>;
}

interface Subscriber {
  ws: WebSocket;
  streamKey: string;
  seqEnd: number | null;
  awaitingAnswer: boolean;
}

export async function startDssSimulator(options: DssSimulatorOptions): Promise<DssSimulator> {
  const { logger } = options;
  const heartbeatMs = options.heartbeatMs ?? 30_000;
  const logs = new Map<string, Record<string, unknown>[]>();
  const subscribers = new Set<Subscriber>();
  const stats: SimulatorStats = {
    connectionsOpen: 0,
    connectionsTotal: 0,
    rejectedKeys: 0,
    heartbeatsSent: 0,
    heartbeatsAnswered: 0,
    closedForMissedHeartbeat: 0,
    connections: [],
  };
  for (const key of options.streamKeys) logs.set(key, []);

  function frameOf(event: Record<string, unknown>): string {
    return formatFrame(JSON.stringify(event));
  }

  function deliver(sub: Subscriber, event: Record<string, unknown>): void {
    const seq = Number(event.seq);
    if (sub.seqEnd !== null && seq > sub.seqEnd) return;
    sub.ws.send(frameOf(event));
    if (sub.seqEnd !== null && seq >= sub.seqEnd) sub.ws.close(1000, 'seq_end reached');
  }

  function emit(streamKey: string, inputs: EventInput | EventInput[]): Record<string, unknown>[] {
    const log = logs.get(streamKey);
    if (!log) throw new Error(`unknown stream key`);
    const emitted = (Array.isArray(inputs) ? inputs : [inputs]).map((input) => {
      // DSS sends seq as a string.
      const event = { seq: String(log.length + 1), ...buildEvent(input) };
      log.push(event);
      return event;
    });
    for (const sub of subscribers) {
      if (sub.streamKey !== streamKey || sub.ws.readyState !== WebSocket.OPEN) continue;
      for (const event of emitted) deliver(sub, event);
    }
    return emitted;
  }

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  wss.on('connection', (ws: WebSocket, sub: Subscriber, seqStart: number | null) => {
    subscribers.add(sub);
    stats.connectionsOpen++;
    stats.connectionsTotal++;
    stats.connections.push({ streamKey: sub.streamKey, seqStart, seqEnd: sub.seqEnd, at: new Date().toISOString() });
    logger?.info({ seqStart, seqEnd: sub.seqEnd }, 'dss-sim: subscriber connected');
    ws.on('message', (data) => {
      if (data.toString() === HEARTBEAT_ANSWER) {
        if (sub.awaitingAnswer) stats.heartbeatsAnswered++;
        sub.awaitingAnswer = false;
      }
    });
    ws.on('close', () => {
      subscribers.delete(sub);
      stats.connectionsOpen--;
    });
    ws.on('error', () => undefined);
    // Replay and go live in the same tick: no event can fall between the two.
    if (seqStart !== null) for (const event of logs.get(sub.streamKey)!.slice(Math.max(0, seqStart - 1))) deliver(sub, event);
  });

  const heartbeat = setInterval(() => {
    for (const sub of subscribers) {
      if (sub.ws.readyState !== WebSocket.OPEN) continue;
      if (sub.awaitingAnswer) {
        stats.closedForMissedHeartbeat++;
        logger?.info('dss-sim: heartbeat not answered; closing');
        sub.ws.close(4000, 'heartbeat not answered');
        setTimeout(() => sub.ws.terminate(), 1_000).unref();
        continue;
      }
      sub.awaitingAnswer = true;
      sub.ws.send(HEARTBEAT_FRAME);
      stats.heartbeatsSent++;
    }
  }, heartbeatMs);
  heartbeat.unref();

  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024, serverFactory: (handler) => http.createServer(handler) });
  // JSON (fastify's own parser) and any text/* as a string, for raw frames.
  app.addContentTypeParser(/^text\//, { parseAs: 'string' }, (_req, body, done) => done(null, body));
  const known = (req: FastifyRequest, reply: FastifyReply): string | undefined => {
    const key = String((req.params as { key: string }).key);
    if (logs.has(key)) return key;
    void reply.code(404).send({ error: 'unknown stream key' });
    return undefined;
  };
  app.post('/streams/:key/events', (req, reply) => {
    const key = known(req, reply);
    if (!key) return;
    try {
      void reply.send({ seqs: emit(key, req.body as EventInput | EventInput[]).map((e) => Number(e.seq)) });
    } catch (err) {
      void reply.code(400).send({ error: (err as Error).message });
    }
  });
  app.post('/streams/:key/frames', (req, reply) => {
    const key = known(req, reply);
    if (key) void reply.send({ sockets: sendRaw(key, String(req.body)) });
  });
  app.get('/streams/:key/events', (req, reply) => {
    const key = known(req, reply);
    if (key) void reply.send({ events: logs.get(key) });
  });
  app.post('/streams/:key/disconnect', (req, reply) => {
    const key = known(req, reply);
    if (key) void reply.send({ sockets: disconnect(key) });
  });
  app.get('/stats', (_req, reply) => void reply.send(stats));
  await app.ready();
  const server = app.server;

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const key = url.searchParams.get('stream_key');
    if (url.pathname !== '/stream' || key === null || !logs.has(key)) {
      stats.rejectedKeys++;
      // The client may reset the connection on reading the 401 (ws does): not the simulator's error.
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const seqStart = integerParam(url, 'seq_start');
    const seqEnd = integerParam(url, 'seq_end');
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, { ws, streamKey: key, seqEnd, awaitingAnswer: false }, seqStart));
  });

  function sendRaw(streamKey: string, text: string): number {
    let count = 0;
    for (const sub of subscribers) {
      if (sub.streamKey === streamKey && sub.ws.readyState === WebSocket.OPEN) {
        sub.ws.send(text);
        count++;
      }
    }
    return count;
  }

  function disconnect(streamKey?: string): number {
    let count = 0;
    for (const sub of subscribers) {
      if (streamKey === undefined || sub.streamKey === streamKey) {
        sub.ws.terminate();
        count++;
      }
    }
    return count;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;

  return {
    port,
    streamUrl: `ws://${host}:${port}/stream`,
    httpUrl: `http://${host}:${port}`,
    addStreamKey: (key) => void (logs.has(key) || logs.set(key, [])),
    emit,
    sendRaw,
    events: (key) => [...(logs.get(key) ?? [])],
    stats: () => structuredClone(stats),
    disconnect,
    async close() {
      clearInterval(heartbeat);
      for (const sub of subscribers) sub.ws.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function integerParam(url: URL, name: string): number | null {
  const raw = url.searchParams.get(name);
  return raw !== null && /^\d{1,15}$/.test(raw) ? Number(raw) : null;
}
