/**
 * REST load for the chaos scenarios: POST /v1/devices/:id/actuations at a fixed rate
 * (open loop: a slow or hung server does not slow the schedule), over an undici Pool
 * with enough keep-alive connections that requests the server holds do not queue here.
 * Every request is recorded: when it was due, when and how it was answered. A request
 * not answered within `timeoutMs` is aborted and recorded as `timeout`.
 */
import { Pool } from 'undici';

export interface Outcome {
  deviceId: string;
  sentAt: number;
  answeredAt: number | undefined;
  /** When it was answered, aborted or failed. */
  endedAt: number | undefined;
  /** HTTP status, or 'timeout' (no answer within timeoutMs) or 'error' (connection failed). */
  status: number | 'timeout' | 'error';
  id?: string;
  seq?: number;
  /** The first bytes of a non-2xx body, or of the error (with its connection, when undici names it). */
  body?: string;
}

export interface Load {
  readonly outcomes: Outcome[];
  /** Stops sending and resolves once every request sent is answered or timed out. */
  stop(): Promise<Outcome[]>;
}

export interface LoadOptions {
  origin: string;
  authorization: string;
  deviceIds: readonly string[];
  /** POSTs per second. */
  rate: number;
  timeoutMs: number;
  /** Stop by itself after this many requests. */
  total?: number;
  /** The request body for the n-th request (default: a small command). */
  body?: (n: number, deviceId: string) => unknown;
}

export function makeRestClient(origin: string, connections: number) {
  return new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
}

export function startLoad(options: LoadOptions): Load {
  const connections = Math.min(2_000, Math.ceil(options.rate * (options.timeoutMs / 1000 + 1)));
  const pool = makeRestClient(options.origin, connections);
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const start = Date.now();
  let sent = 0;
  let stopped = false;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));

  async function post(n: number): Promise<void> {
    const deviceId = options.deviceIds[n % options.deviceIds.length]!;
    const outcome: Outcome = { deviceId, sentAt: Date.now(), answeredAt: undefined, endedAt: undefined, status: 'error' };
    outcomes.push(outcome);
    const body = options.body?.(n, deviceId) ?? { componentId: 'chaos', command: 'set', params: [{ name: 'n', value: String(n) }] };
    try {
      const res = await pool.request({
        method: 'POST',
        path: `/v1/devices/${encodeURIComponent(deviceId)}/actuations`,
        headers: { 'content-type': 'application/json', authorization: options.authorization },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      const text = await res.body.text();
      outcome.answeredAt = Date.now();
      outcome.status = res.statusCode;
      if (res.statusCode >= 200 && res.statusCode < 300) {
        const json = JSON.parse(text) as { id: string; seq: number };
        outcome.id = json.id;
        outcome.seq = json.seq;
      } else {
        outcome.body = text.slice(0, 200);
      }
    } catch (err) {
      outcome.status = (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? 'timeout' : 'error';
      outcome.body = describeError(err).slice(0, 300);
    } finally {
      outcome.endedAt = Date.now();
    }
  }

  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - start) * options.rate) / 1000) + 1;
    while (!stopped && sent < due && (options.total === undefined || sent < options.total)) {
      const p = post(sent++);
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    if (options.total !== undefined && sent >= options.total) {
      clearInterval(timer);
      done();
    }
  }, 5);

  return {
    outcomes,
    async stop() {
      stopped = true;
      clearInterval(timer);
      done();
      await finished;
      while (pending.size > 0) await Promise.all([...pending]);
      await pool.close().catch(() => pool.destroy());
      return outcomes;
    },
  };
}

/**
 * The error and what undici knows of the connection it happened on (its local port, and
 * bytes read before: more than 0 means a kept-alive connection reused), so that a failure
 * says whether the server closed a connection the client reused.
 */
function describeError(err: unknown): string {
  const e = err as Error & { code?: string; socket?: { localPort?: number; bytesRead?: number; bytesWritten?: number } };
  const socket = e.socket ? ` (local port ${e.socket.localPort}, ${e.socket.bytesWritten} bytes written, ${e.socket.bytesRead} read on it)` : '';
  return `${e.code ?? e.name}: ${e.message}${socket}`;
}

/** Resolves when a load with `total` has sent everything (then call stop() for the answers). */
export async function sentAll(load: Load, total: number, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (load.outcomes.length < total) {
    if (Date.now() - started > timeoutMs) throw new Error(`only ${load.outcomes.length} of ${total} requests sent within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
