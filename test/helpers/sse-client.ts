/**
 * A Server-Sent Events client over node:http that parses what it receives as
 * EventSource does (`id:`, `event:`, `data:` lines, blank line ends an event; `:`
 * comments), keeps everything, and can stop reading (its socket is paused: the
 * server's writes pile up in the kernel and then in the server) to play a slow client.
 */
import http from 'node:http';
import { eventually } from './eventually.js';
import { TEST_CREDENTIALS } from './server.js';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
  /** `data` parsed as JSON. */
  json: { id: number; type: string; at: string; data: Record<string, unknown> } & Record<string, unknown>;
}

export interface SseClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: SseEvent[];
  comments: string[];
  /** True once the server ended the stream (or the connection closed). */
  readonly ended: boolean;
  /** The feed events received (not `dropped`), their ids as numbers. */
  ids(): number[];
  lastId(): string | undefined;
  /** Waits (bounded, throws EventuallyTimeout) until `ok` holds for the events received. */
  waitFor(ok: (events: SseEvent[]) => boolean, timeoutMs?: number): Promise<SseEvent[]>;
  pause(): void;
  resume(): void;
  close(): void;
}

export function openSse(port: number, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const authorization = 'Basic ' + Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, headers: { authorization, accept: 'text/event-stream', ...headers } }, (res) => {
      let buffer = '';
      let current: { id?: string; event?: string; data: string[] } = { data: [] };
      let ended = false;
      const client: SseClient = {
        status: res.statusCode!,
        headers: res.headers,
        events: [],
        comments: [],
        get ended() {
          return ended;
        },
        ids: () => client.events.filter((e) => e.event !== 'dropped').map((e) => Number(e.id)),
        lastId: () => client.events.filter((e) => e.id !== undefined).at(-1)?.id,
        waitFor: (ok, timeoutMs = 15_000) => eventually(() => client.events, ok, timeoutMs),
        pause: () => res.socket.pause(),
        resume: () => res.socket.resume(),
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (current.data.length > 0) {
              const data = current.data.join('\n');
              let json: SseEvent['json'];
              try {
                json = JSON.parse(data) as SseEvent['json'];
              } catch {
                json = undefined as never;
              }
              client.events.push({ id: current.id, event: current.event ?? 'message', data, json });
            }
            current = { data: [] };
          } else if (line.startsWith(':')) {
            client.comments.push(line.slice(1).trim());
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'id') current.id = value;
            else if (field === 'event') current.event = value;
            else if (field === 'data') current.data.push(value);
          }
        }
      });
      res.on('end', () => (ended = true));
      res.on('close', () => (ended = true));
      res.on('error', () => (ended = true));
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}
