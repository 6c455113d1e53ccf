/**
 * One outgoing webhook request, bounded in every way the receiver could abuse:
 * - the whole exchange (connect, TLS, headers, reading the body) within `timeoutMs`;
 * - no redirect is followed (a 3xx is an answer like any other: not 2xx, so retried);
 * - at most `MAX_RESPONSE_BYTES` of the response body are read, then the socket is dropped;
 * - unless `allowPrivate`, the destination's address is checked where the socket
 *   connects (`destination-guard.ts`); a kept-alive connection (the sender's per-endpoint
 *   `Connection`) was checked when it was made, and only a fully read answer leaves it open.
 */
import { Client, buildConnector, type Dispatcher } from 'undici';
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
  /** The held endpoint's kept-alive connection (`makeConnection`); none: a connection for this request only. */
  connection?: Connection;
}

/** One kept-alive connection to an endpoint, made on first use for the URL's origin (again after `drop`). */
export interface Connection {
  clientFor(url: URL): Client;
  /** Closes the connection, ending what is in flight on it (a timeout, an answer not read to its end). */
  drop(): void;
  /** Set when `signal` aborted: no request starts any more. */
  readonly aborted: boolean;
  destroy(): void;
}

/**
 * An undici `Client` (one connection, one request at a time) with the guard's lookup
 * unless `allowPrivate`. undici rather than node:http: less CPU per POST
 * (`bench/experiments/webhook-client.ts`); it follows no redirect. `signal` (shutdown)
 * drops the connection, which ends the request in flight as a connection error: one
 * listener per held endpoint, not one per request.
 */
export function makeConnection(options: { allowPrivate: boolean; timeoutMs: number; signal?: AbortSignal }): Connection {
  let client: Client | undefined;
  let origin = '';
  const drop = () => {
    client?.destroy().catch(() => {});
    client = undefined;
  };
  const onAbort = () => drop();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const connect = buildConnector({ timeout: options.timeoutMs, ...(options.allowPrivate ? {} : { lookup: guardedLookup }) });
  return {
    clientFor(url) {
      if (client && origin === url.origin) return client;
      drop();
      origin = url.origin;
      client = new Client(url.origin, { pipelining: 1, connect });
      return client;
    },
    drop,
    get aborted() {
      return options.signal?.aborted ?? false;
    },
    destroy() {
      options.signal?.removeEventListener('abort', onAbort);
      drop();
    },
  };
}

export function boundedPost(options: PostOptions): Promise<PostResult> {
  const url = typeof options.url === 'string' ? new URL(options.url) : options.url;
  if (!options.allowPrivate) {
    const literal = refusedLiteral(url.hostname);
    if (literal !== undefined) return Promise.resolve(refusedResult(new DestinationRefusedError(url.hostname, literal)));
  }
  const connection = options.connection ?? makeConnection(options);
  if (connection.aborted) return Promise.resolve({ ok: false, error: 'connection error: aborted (shutting down)' });
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    let statusCode: number | undefined;
    let read = 0;
    /** `keep`: the answer was read to its end, the connection may serve the next request. */
    const finish = (result: PostResult, keep = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!keep || !options.connection) connection.drop();
      resolve(result);
    };
    // Connect to last byte: dropping the connection ends the request wherever it is.
    const timer = setTimeout(() => finish({ ok: false, error: `timeout: no complete answer within ${options.timeoutMs} ms` }), options.timeoutMs);
    // The handler's onRequestStart makes undici call it with the newer (controller) API.
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart(_controller, status) {
        statusCode = status;
      },
      onResponseData(_controller, chunk) {
        read += chunk.length;
        // Enough: the status is the answer; a longer body is not read any further.
        if (read >= MAX_RESPONSE_BYTES) finish(result(statusCode!));
      },
      onResponseEnd: () => finish(result(statusCode!), true),
      onResponseError(_controller, err) {
        if (err instanceof DestinationRefusedError) return finish(refusedResult(err));
        finish({ ok: false, ...(statusCode === undefined ? {} : { statusCode }), error: connectionError(err) });
      },
    };
    connection.clientFor(url).dispatch(
      {
        method: 'POST',
        path: url.pathname + url.search,
        headers: { ...options.headers, 'content-type': 'application/json', 'user-agent': 'iot-websocket-server-webhooks' },
        body: options.body,
      },
      handler,
    );
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
