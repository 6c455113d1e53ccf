import { Router, type RequestHandler } from 'express';
import type { Registry } from 'prom-client';
import { basicAuth } from '../basic-auth.js';

/**
 * `GET /metrics` in Prometheus text format. With `credentials`, the route checks them
 * itself (any one of them: the API's, and the read-only metrics credential), so it is
 * mounted before the API's own authentication and the metrics credential opens
 * nothing else.
 */
export function metricsRoutes(registry: Registry, credentials: { username: string; password: string }[] = []): Router {
  const router = Router();
  const handlers: RequestHandler[] = credentials.length > 0 ? [anyOf(credentials.map((c) => basicAuth(c)))] : [];
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
