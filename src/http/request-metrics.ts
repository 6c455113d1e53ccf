/**
 * Counts and times every HTTP request by route template (`/v1/devices/:deviceId/actuations`,
 * never the path itself, so the label stays bounded), method and status class.
 * A request that did not reach its route's handler stage (404, or refused before it:
 * 401, 403, 429, 503, a body that could not be read) is `unmatched`.
 */
import type { FastifyRequest, onRequestHookHandler, preValidationHookHandler } from 'fastify';
import type client from 'prom-client';

type Labels = 'route' | 'method' | 'status_class';
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
/** Set once the request passed authentication, scope and body (fastify's `preValidation`). */
const ROUTED = Symbol('routed');

export interface RequestObserver {
  onRequest: onRequestHookHandler;
  preValidation: preValidationHookHandler;
}

/** The hooks to run first on every request (`api.ts` adds them before any other). */
export function requestMetrics(metrics: { httpRequests: client.Counter<Labels>; httpRequestSeconds: client.Histogram<Labels> }): RequestObserver {
  return {
    onRequest(request, reply, done) {
      const started = process.hrtime.bigint();
      const res = reply.raw;
      res.once('finish', () => {
        const routed = (request as FastifyRequest & { [ROUTED]?: true })[ROUTED] === true && !request.is404;
        const route = routed ? (request.routeOptions.url ?? 'unmatched') : 'unmatched';
        // Methods outside the usual set are one label value, so a client cannot mint series.
        const labels = { route, method: METHODS.has(request.method) ? request.method : 'other', status_class: `${Math.floor(res.statusCode / 100)}xx` };
        metrics.httpRequests.inc(labels);
        metrics.httpRequestSeconds.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
      });
      done();
    },
    preValidation(request, _reply, done) {
      (request as FastifyRequest & { [ROUTED]?: true })[ROUTED] = true;
      done();
    },
  };
}
