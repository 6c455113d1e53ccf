/**
 * Request ids and one log line per REST request.
 *
 * Each request gets an id (a well-formed `X-Request-Id` from the caller, or a new UUID),
 * returned as `X-Request-Id`, bound as `reqId` on `req.log`, and recorded as the source of
 * the actuations it creates. When the response is done, one line is logged: at error for
 * 5xx, info for 4xx, debug otherwise.
 *
 * Why not pino-http: it builds a child logger with the whole serialized (and redacted)
 * request on every request, whether or not anything is logged; that was ~7% of the
 * server's CPU per actuation in `npm run bench -- actuations --cpu-prof`. Here the child
 * logger is made only when something asks for `req.log`, and the line only when its level
 * is enabled.
 *
 * `req.log` is one getter on `http.IncomingMessage.prototype` (fastify's `request.raw`),
 * defined once, reading the logger each request carries under a symbol: an
 * `Object.defineProperty` on every request object cost ~12 µs per request here (it turns
 * the object into a slow dictionary-mode one), against ~1 µs for a plain field. fastify's
 * own logger is off (`logger: false`): with one, it would make a child logger per request
 * and log every request twice; so `request.log` is fastify's no-op, and handlers log
 * through `request.raw.log`.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../logger.js';

declare module 'http' {
  interface IncomingMessage {
    /** This request's id (see above). */
    id: string;
    /** A logger bound to this request's id. */
    log: Logger;
  }
}

const WELL_FORMED_ID = /^[\w.-]{1,128}$/;

const BASE_LOGGER = Symbol('requestBaseLogger');
const REQUEST_LOGGER = Symbol('requestLogger');
interface LoggedRequest {
  id: string;
  [BASE_LOGGER]?: Logger;
  [REQUEST_LOGGER]?: Logger;
}

Object.defineProperty(http.IncomingMessage.prototype, 'log', {
  configurable: true,
  get(this: LoggedRequest): Logger | undefined {
    return (this[REQUEST_LOGGER] ??= this[BASE_LOGGER]?.child({ reqId: this.id }));
  },
  set(this: LoggedRequest, value: Logger) {
    this[REQUEST_LOGGER] = value;
  },
});

/** The request's id: a well-formed `X-Request-Id` from the caller, or a new UUID (fastify's `genReqId`). */
export function requestId(req: http.IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && WELL_FORMED_ID.test(given) ? given : crypto.randomUUID();
}

/**
 * `start` (from the API's first `onRequest` hook) returns the id (fastify made it with
 * `requestId`) and binds `raw.log`; `finished` (from its one response listener, once the
 * response has finished) logs the line.
 */
export function requestLog(logger: Logger) {
  return {
    start(request: FastifyRequest, reply: FastifyReply): void {
      const req = request.raw;
      const id = request.id;
      // On the raw response, so that a hijacked one (the change feed's) carries it too.
      reply.raw.setHeader('X-Request-Id', id);
      req.id = id;
      (req as unknown as LoggedRequest)[BASE_LOGGER] = logger;
    },
    finished(request: FastifyRequest, statusCode: number, startedMs: number): void {
      const level = statusCode >= 500 ? 'error' : statusCode >= 400 ? 'info' : 'debug';
      if (!logger.isLevelEnabled(level)) return;
      const req = request.raw;
      req.log[level]({ req: { method: req.method, url: req.url }, res: { statusCode }, responseTimeMs: Math.round(performance.now() - startedMs) }, 'request completed');
    },
  };
}
