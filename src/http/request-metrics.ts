/**
 * Counts and times every HTTP request by route template (`/v1/devices/:deviceId/actuations`,
 * never the path itself, so the label stays bounded), method and status class.
 * A request that did not reach its route's handler stage (404, or refused before it:
 * 401, 403, 429, 503, a body that could not be read) is `unmatched`.
 */
import type { FastifyRequest, preValidationHookHandler } from 'fastify';
import type client from 'prom-client';

type Labels = 'route' | 'method' | 'status_class';
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
/** Set once the request passed authentication, scope and body (fastify's `preValidation`). */
const ROUTED = Symbol('routed');

export interface RequestObserver {
  /** The response to `request`, received at `startedMs` (`performance.now()`), has finished (`api.ts` calls it from its one response listener). */
  finished(request: FastifyRequest, statusCode: number, startedMs: number): void;
  preValidation: preValidationHookHandler;
}

export function requestMetrics(metrics: { httpRequests: client.Counter<Labels>; httpRequestSeconds: client.Histogram<Labels> }): RequestObserver {
  return {
    finished(request, statusCode, startedMs) {
      const routed = (request as FastifyRequest & { [ROUTED]?: true })[ROUTED] === true && !request.is404;
      const route = routed ? (request.routeOptions.url ?? 'unmatched') : 'unmatched';
      // Methods outside the usual set are one label value, so a client cannot mint series.
      const labels = { route, method: METHODS.has(request.method) ? request.method : 'other', status_class: `${Math.floor(statusCode / 100)}xx` };
      metrics.httpRequests.inc(labels);
      metrics.httpRequestSeconds.observe(labels, (performance.now() - startedMs) / 1000);
    },
    preValidation(request, _reply, done) {
      (request as FastifyRequest & { [ROUTED]?: true })[ROUTED] = true;
      done();
    },
  };
}
