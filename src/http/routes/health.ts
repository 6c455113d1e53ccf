import { Router } from 'express';
import type { Pool } from '../../db/pool.js';
import { ApiError } from '../errors.js';

/** Unauthenticated probes: `/healthz` says the process is up, `/readyz` that the database answers. */
export function healthRoutes(pool: Pool, isShuttingDown: () => boolean): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    if (isShuttingDown()) throw new ApiError('SHUTTING_DOWN');
    try {
      await pool.query('select 1');
    } catch (err) {
      throw new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
    }
    res.json({ status: 'ready' });
  });
  return router;
}
