/**
 * One change-feed subscriber for the actuations bench (`--sse`): GET /v1/events in
 * this process, taking every event as fast as the server sends it. Counts events and,
 * while recording, how long each took from its transaction's start (`at`, the
 * database's `now()`, same machine clock) to arriving here: an upper bound of
 * committed → subscriber (it includes the transaction's own duration).
 */
import http from 'node:http';

export interface BenchSseSubscriber {
  readonly events: number;
  record(on: boolean): void;
  /** Latencies (ms) seen while recording, then cleared. */
  takeLatencies(): number[];
  /** Resolves once `count` events arrived in all (bounded by `timeoutMs`; false if not). */
  waitForCount(count: number, timeoutMs: number): Promise<boolean>;
  close(): void;
}

export function startBenchSseSubscriber(origin: string, authorization: string): Promise<BenchSseSubscriber> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${origin}/v1/events`, { headers: { authorization, accept: 'text/event-stream' }, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET /v1/events answered ${res.statusCode}`));
        res.resume();
        return;
      }
      let events = 0;
      let recording = false;
      let latencies: number[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (!data || !block.startsWith('id: ')) continue;
          events++;
          if (recording) latencies.push(Date.now() - Date.parse((JSON.parse(data.slice(6)) as { at: string }).at));
        }
      });
      resolve({
        get events() {
          return events;
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
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}
