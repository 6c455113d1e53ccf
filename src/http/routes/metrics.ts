import { Router, type RequestHandler } from 'express';
import type { MetricsSource } from '../../cluster/cluster-metrics.js';
import type { KeyVerifier } from '../../keys/key-verifier.js';
import { authenticate, requireScope } from '../auth.js';
import { basicAuth } from '../basic-auth.js';

/**
 * `GET /metrics` in Prometheus text format. With `credentials`, the route checks them
 * itself (any one of them: the API's, and the read-only metrics credential), so it is
 * mounted before the API's own authentication and the metrics credential opens
 * nothing else.
 */
export function metricsRoutes(registry: MetricsSource, credentials: { username: string; password: string }[] = [], keys?: KeyVerifier): Router {
  const router = Router();
  const basic: RequestHandler[] = credentials.length > 0 ? [anyOf(credentials.map((c) => basicAuth(c)))] : [];
  // An API key with `metrics:read` (or `admin`) too; a Bearer header is answered by the key check alone.
  const handlers: RequestHandler[] = keys && basic.length > 0 ? [bearerOr(authenticate({ keys }), requireScope('metrics:read'), basic[0]!)] : basic;
  router.get('/metrics', ...handlers, async (_req, res) => {
    const body = await registry.metrics();
    res.type(registry.contentType).send(body);
  });
  return router;
}

/** Passes when one of `checks` passes; otherwise fails as the last one did. */
function anyOf(checks: RequestHandler[]): RequestHandler {
  return (req, res, next) => {
    const attempt = (i: number): void => {
      void checks[i]!(req, res, (err?: unknown) => {
        if (err === undefined || err === null) return next();
        if (i + 1 < checks.length) return attempt(i + 1);
        next(err);
      });
    };
    attempt(0);
  };
}

/** `key` then `scope` for a request with a Bearer token, `otherwise` for the rest. */
function bearerOr(key: RequestHandler, scope: RequestHandler, otherwise: RequestHandler): RequestHandler {
  return (req, res, next) => {
    if (!/^Bearer\s/i.test(req.headers.authorization ?? '')) return void otherwise(req, res, next);
    void key(req, res, (err?: unknown) => (err === undefined || err === null ? void scope(req, res, next) : next(err)));
  };
}
