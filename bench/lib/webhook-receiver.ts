/**
 * One webhook endpoint for the actuations bench (`--sse --webhook`): an HTTP server in
 * this process answering 204 at once, registered on our server for every event type.
 * Counts distinct event ids (a retried delivery counts once) and, while recording, each
 * one's arrival time and its transaction's start (the body's `at`, the database's `now()`,
 * same machine clock): as the SSE subscriber's arrivals, so `commitLatencies` turns them
 * into committed → webhook.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SseArrival } from '../sse-client.js';
import type { RunningServer } from './our-server.js';
import { EVENT_TYPES } from '../../src/events/types.js';

export interface BenchWebhookReceiver {
  /** Distinct events received. */
  readonly events: number;
  record(on: boolean): void;
  /** Arrivals seen while recording, then cleared. */
  takeArrivals(): SseArrival[];
  /** Resolves true once `count` distinct events arrived, false when `timeoutMs` passed first. */
  waitForCount(count: number, timeoutMs: number): Promise<boolean>;
  close(): void;
}

export async function startBenchWebhookReceiver(server: RunningServer): Promise<BenchWebhookReceiver> {
  const seen = new Set<number>();
  let recording = false;
  let arrivals: SseArrival[] = [];
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const id = Number(req.headers['x-iotws-event-id']);
      if (!seen.has(id)) {
        seen.add(id);
        if (recording) arrivals.push({ id, arrivedMs: Date.now(), atMs: Date.parse((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { at: string }).at) });
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const created = await server.api('POST', '/v1/webhooks', {
    url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
    events: [...EVENT_TYPES],
    secret: 'bench-secret-0123456789abcdef',
  });
  if (created.status !== 201) {
    receiver.close();
    throw new Error(`POST /v1/webhooks: ${created.status} ${JSON.stringify(created.json)}`);
  }
  return {
    get events() {
      return seen.size;
    },
    record: (on) => (recording = on),
    takeArrivals() {
      const taken = arrivals;
      arrivals = [];
      return taken;
    },
    async waitForCount(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (seen.size < count) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
      return true;
    },
    close() {
      receiver.closeAllConnections();
      receiver.close();
    },
  };
}
