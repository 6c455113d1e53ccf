import { Router } from 'express';
import type { Registry } from 'prom-client';

/** `GET /metrics` in Prometheus text format. */
export function metricsRoutes(registry: Registry): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const body = await registry.metrics();
    res.type(registry.contentType).send(body);
  });
  return router;
}
