/**
 * The change-feed subscriber of the actuations bench (`--sse`), in a process of its own
 * (IPC channel only), so the bench's load generator and bookkeeping never delay it:
 * GET /v1/events, taking every event as fast as it can. Behaves as a client should: when
 * the server ends the stream (it drops a subscriber that falls too far behind, with a
 * final `dropped` event), it reconnects with `Last-Event-ID` and counts that.
 *
 *   {op:'start', origin, authorization}  -> {op:'started'}
 *   {op:'record', on}                    -> {op:'recorded', arrivals}  (arrivals: those since the last `record`)
 *   {op:'wait', count, timeoutMs}        -> {op:'waited', ok, events, reconnects}
 *
 * While recording, each event's id, arrival time (Date.now(), the machine clock
 * PostgreSQL's timestamps use) and `at` (its transaction's start) are kept; the bench
 * joins the ids to their commit timestamps.
 */
import http from 'node:http';
import { exitWithParent } from './lib/ipc.js';

export interface SseArrival {
  id: number;
  arrivedMs: number;
  /** The event's `at`: its transaction's start. */
  atMs: number;
}

export type SseClientRequest =
  | { op: 'start'; origin: string; authorization: string }
  | { op: 'record'; on: boolean }
  | { op: 'wait'; count: number; timeoutMs: number };
export type SseClientReply =
  | { op: 'started' }
  | { op: 'recorded'; arrivals: SseArrival[] }
  | { op: 'waited'; ok: boolean; events: number; reconnects: number }
  | { op: 'error'; message: string };

let events = 0;
let reconnects = 0;
let recording = false;
let arrivals: SseArrival[] = [];
let lastId: string | undefined;

function connect(origin: string, authorization: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const headers: Record<string, string> = { authorization, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) };
    const req = http.get(`${origin}/v1/events`, { headers, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET /v1/events answered ${res.statusCode}`));
        res.resume();
        return;
      }
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const arrivedMs = Date.now();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!block.startsWith('id: ')) continue;
          lastId = block.slice(4, block.indexOf('\n'));
          events++;
          if (recording) {
            const data = block.slice(block.indexOf('\ndata: ') + 7);
            arrivals.push({ id: Number(lastId), arrivedMs, atMs: Date.parse((JSON.parse(data) as { at: string }).at) });
          }
        }
      });
      res.on('close', () => {
        reconnects++;
        setTimeout(() => void connect(origin, authorization).catch(() => undefined), 100);
      });
      resolve();
    });
    req.on('error', reject);
  });
}

async function waitForCount(count: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (events < count) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

process.on('message', (message: SseClientRequest) => {
  const reply = (r: SseClientReply) => process.send?.(r);
  void (async () => {
    try {
      if (message.op === 'start') {
        await connect(message.origin, message.authorization);
        reply({ op: 'started' });
      } else if (message.op === 'record') {
        const taken = arrivals;
        arrivals = [];
        recording = message.on;
        reply({ op: 'recorded', arrivals: taken });
      } else if (message.op === 'wait') {
        const ok = await waitForCount(message.count, message.timeoutMs);
        reply({ op: 'waited', ok, events, reconnects });
      }
    } catch (err) {
      reply({ op: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});

exitWithParent();
