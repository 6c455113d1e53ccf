/**
 * One change-feed subscriber for the actuations bench (`--sse`): GET /v1/events in
 * this process, taking every event as fast as it can. Behaves as a client should: when
 * the server ends the stream (it drops a subscriber that falls too far behind, with a
 * final `dropped` event), it reconnects with `Last-Event-ID` and counts that. Counts
 * events and, while recording, how long each took from its transaction's start (`at`,
 * the database's `now()`, same machine clock) to arriving here: an upper bound of
 * committed → subscriber (it includes the transaction's own duration).
 */
import http from 'node:http';

export interface BenchSseSubscriber {
  readonly events: number;
  /** Times the server ended the stream and it reconnected. */
  readonly reconnects: number;
  record(on: boolean): void;
  /** Latencies (ms) seen while recording, then cleared. */
  takeLatencies(): number[];
  /** Resolves once `count` events arrived in all (bounded by `timeoutMs`; false if not). */
  waitForCount(count: number, timeoutMs: number): Promise<boolean>;
  close(): void;
}

export async function startBenchSseSubscriber(origin: string, authorization: string): Promise<BenchSseSubscriber> {
  let events = 0;
  let reconnects = 0;
  let recording = false;
  let latencies: number[] = [];
  let lastId: string | undefined;
  let closed = false;
  let req: http.ClientRequest | undefined;

  const connect = () =>
    new Promise<void>((resolve, reject) => {
      const headers: Record<string, string> = { authorization, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) };
      req = http.get(`${origin}/v1/events`, { headers, agent: false }, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET /v1/events answered ${res.statusCode}`));
          res.resume();
          return;
        }
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
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
              latencies.push(Date.now() - Date.parse((JSON.parse(data) as { at: string }).at));
            }
          }
        });
        res.on('close', () => {
          if (closed) return;
          reconnects++;
          setTimeout(() => void connect().catch(() => undefined), 100);
        });
        resolve();
      });
      req.on('error', reject);
    });

  await connect();
  return {
    get events() {
      return events;
    },
    get reconnects() {
      return reconnects;
    },
    record: (on) => (recording = on),
    takeLatencies() {
      const taken = latencies;
      latencies = [];
      return taken;
    },
    async waitForCount(count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (events < count) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
      return true;
    },
    close() {
      closed = true;
      req?.destroy();
    },
  };
}
