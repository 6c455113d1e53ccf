// The node:http boundedPost as it was before undici (main 6131eed, src/webhooks/bounded-post.ts), kept only as the 'before' of bench/experiments/webhook-client.ts.
/**
 * One outgoing webhook request, bounded in every way the receiver could abuse:
 * - the whole exchange (connect, TLS, headers, reading the body) within `timeoutMs`;
 * - no redirect is followed (a 3xx is an answer like any other: not 2xx, so retried);
 * - at most `MAX_RESPONSE_BYTES` of the response body are read, then the socket is dropped;
 * - unless `allowPrivate`, the destination's address is checked where the socket
 *   connects (`destination-guard.ts`); a kept-alive connection (the sender's per-endpoint
 *   agent) was checked when it was made, and only a fully read answer leaves it open.
 */
import http from 'node:http';
import https from 'node:https';
import { DestinationRefusedError, guardedLookup, refusedLiteral } from '../../src/webhooks/destination-guard.js';

export const MAX_RESPONSE_BYTES = 64 * 1024;

export type PostResult = { ok: true; statusCode: number } | { ok: false; statusCode?: number; error: string; refused?: boolean };

export interface PostOptions {
  /** Parsed already by a sender that posts to it again and again. */
  url: string | URL;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  allowPrivate: boolean;
  /** Aborts the request (shutdown); it then resolves as a connection error. */
  signal?: AbortSignal;
  /** Keep-alive connections for `agentsFor(url)`; none: a connection for this request only. */
  agents?: { http: http.Agent; https: https.Agent };
}

/** Keep-alive agents, one connection each (one request at a time per endpoint), with the guard's lookup unless `allowPrivate`. */
export function makeAgents(allowPrivate: boolean): { http: http.Agent; https: https.Agent; destroy(): void } {
  const options = { keepAlive: true, maxSockets: 1, ...(allowPrivate ? {} : { lookup: guardedLookup }) };
  const agents = { http: new http.Agent(options), https: new https.Agent(options) };
  return { ...agents, destroy: () => (agents.http.destroy(), agents.https.destroy()) };
}

export function boundedPost(options: PostOptions): Promise<PostResult> {
  const url = typeof options.url === 'string' ? new URL(options.url) : options.url;
  if (!options.allowPrivate) {
    const literal = refusedLiteral(url.hostname);
    if (literal !== undefined) return Promise.resolve(refusedResult(new DestinationRefusedError(url.hostname, literal)));
  }
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    /** `keep`: the answer was read to its end, the connection may serve the next request. */
    const finish = (result: PostResult, keep = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!keep) request.destroy();
      resolve(result);
    };
    const agent = options.agents ? (url.protocol === 'https:' ? options.agents.https : options.agents.http) : false;
    const request = transport.request(url, {
      method: 'POST',
      agent,
      headers: { ...options.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(options.body), 'user-agent': 'iot-websocket-server-webhooks' },
      ...(options.allowPrivate ? {} : { lookup: guardedLookup }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const timer = setTimeout(() => finish({ ok: false, error: `timeout: no complete answer within ${options.timeoutMs} ms` }), options.timeoutMs);
    request.on('error', (err) => finish(err instanceof DestinationRefusedError ? refusedResult(err) : { ok: false, error: connectionError(err) }));
    request.on('response', (response) => {
      const statusCode = response.statusCode ?? 0;
      let read = 0;
      response.on('data', (chunk: Buffer) => {
        read += chunk.length;
        // Enough: the status is the answer; a longer body is not read any further.
        if (read >= MAX_RESPONSE_BYTES) finish(result(statusCode));
      });
      response.on('end', () => finish(result(statusCode), true));
      response.on('error', (err) => finish({ ok: false, statusCode, error: connectionError(err) }));
    });
    request.end(options.body);
  });
}

function result(statusCode: number): PostResult {
  return statusCode >= 200 && statusCode < 300 ? { ok: true, statusCode } : { ok: false, statusCode, error: `HTTP ${statusCode}` };
}

function refusedResult(err: DestinationRefusedError): PostResult {
  return { ok: false, error: err.message, refused: true };
}

/** A short, safe description: the error code and message (never the request, which holds the signature). */
function connectionError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return `connection error: ${code ? `${code} ` : ''}${err.message}`.slice(0, 500);
}
