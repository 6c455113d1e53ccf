/**
 * One outgoing webhook request, bounded in every way the receiver could abuse:
 * - the whole exchange (connect, TLS, headers, reading the body) within `timeoutMs`;
 * - no redirect is followed (a 3xx is an answer like any other: not 2xx, so retried);
 * - at most `MAX_RESPONSE_BYTES` of the response body are read, then the socket is dropped;
 * - unless `allowPrivate`, the destination's address is checked where the socket
 *   connects (`destination-guard.ts`); a kept-alive connection (the sender's per-endpoint
 *   `Connection`) was checked when it was made, and only a fully read answer leaves it open.
 */
import { Client, buildConnector } from 'undici';
import { DestinationRefusedError, guardedLookup, refusedLiteral } from './destination-guard.js';

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
  /** The held endpoint's kept-alive connection (`makeConnection`); none: a connection for this request only. */
  connection?: Connection;
}

/** One kept-alive connection to an endpoint, made on first use for the URL's origin (again after `drop`). */
export interface Connection {
  clientFor(url: URL): Client;
  /** Closes the connection (a timeout, an answer not read to its end); the next request makes a new one. */
  drop(): void;
  destroy(): void;
}

/**
 * An undici `Client` (one connection, one request at a time), with the guard's lookup
 * unless `allowPrivate`. undici rather than node:http: ~40% less CPU per POST
 * (`bench/experiments/webhook-client.ts`), and it follows no redirect.
 */
export function makeConnection(allowPrivate: boolean, timeoutMs: number): Connection {
  let client: Client | undefined;
  let origin = '';
  const drop = () => {
    // Rejects what is in flight on it, which is how a timeout ends its request.
    client?.destroy().catch(() => {});
    client = undefined;
  };
  return {
    clientFor(url) {
      if (client && origin === url.origin) return client;
      drop();
      origin = url.origin;
      client = new Client(url.origin, { pipelining: 1, connect: buildConnector({ timeout: timeoutMs, ...(allowPrivate ? {} : { lookup: guardedLookup }) }) });
      return client;
    },
    drop,
    destroy: drop,
  };
}

export async function boundedPost(options: PostOptions): Promise<PostResult> {
  const url = typeof options.url === 'string' ? new URL(options.url) : options.url;
  if (!options.allowPrivate) {
    const literal = refusedLiteral(url.hostname);
    if (literal !== undefined) return refusedResult(new DestinationRefusedError(url.hostname, literal));
  }
  const connection = options.connection ?? makeConnection(options.allowPrivate, options.timeoutMs);
  let timedOut = false;
  // Connect to last byte: dropping the connection ends the request wherever it is.
  const timer = setTimeout(() => {
    timedOut = true;
    connection.drop();
  }, options.timeoutMs);
  let statusCode: number | undefined;
  try {
    const response = await connection.clientFor(url).request({
      method: 'POST',
      path: url.pathname + url.search,
      headers: { ...options.headers, 'content-type': 'application/json', 'user-agent': 'iot-websocket-server-webhooks' },
      body: options.body,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    statusCode = response.statusCode;
    let read = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      read += chunk.length;
      // Enough: the status is the answer; a longer body is not read any further.
      if (read >= MAX_RESPONSE_BYTES) {
        connection.drop();
        break;
      }
    }
    return result(statusCode);
  } catch (err) {
    if (timedOut) return { ok: false, error: `timeout: no complete answer within ${options.timeoutMs} ms` };
    if (err instanceof DestinationRefusedError) return refusedResult(err);
    return { ok: false, ...(statusCode === undefined ? {} : { statusCode }), error: connectionError(err as Error) };
  } finally {
    clearTimeout(timer);
    if (!options.connection) connection.destroy();
  }
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
