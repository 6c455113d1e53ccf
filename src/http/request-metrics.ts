/**
 * Counts and times every HTTP request by route template (`/v1/devices/:deviceId/actuations`,
 * never the path itself, so the label stays bounded), method and status class.
 * A request no route matched (404, or refused before routing: 401, 503) is `unmatched`.
 */
import type { RequestHandler } from 'express';
import type client from 'prom-client';

type Labels = 'route' | 'method' | 'status_class';
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);

export function requestMetrics(metrics: { httpRequests: client.Counter<Labels>; httpRequestSeconds: client.Histogram<Labels> }): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const routePath = req.route?.path as unknown;
      const route = typeof routePath === 'string' ? `${req.baseUrl}${routePath}` : 'unmatched';
      // Methods outside the usual set are one label value, so a client cannot mint series.
      const labels = { route, method: METHODS.has(req.method) ? req.method : 'other', status_class: `${Math.floor(res.statusCode / 100)}xx` };
      metrics.httpRequests.inc(labels);
      metrics.httpRequestSeconds.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}
