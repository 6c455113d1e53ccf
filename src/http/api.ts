/**
 * The REST API as an express app: unauthenticated probes, then HTTP Basic, then
 * the versioned routes, then the one error handler.
 */
import express, { type Router } from 'express';
import type { ActuationSubmitter, TransitionObserver } from '../actuations/types.js';
import type { Pool } from '../db/pool.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Logger } from '../logger.js';
import { basicAuth } from './basic-auth.js';
import { ApiError } from './errors.js';
import { requestLog } from './request-log.js';
import { makeErrorHandler, notFoundHandler } from './error-handler.js';
import { actuationRoutes } from './routes/actuations.js';
import { deviceRoutes } from './routes/devices.js';
import { openApiDocument } from './openapi.js';
import { docsPage } from './docs-page.js';
import { healthRoutes } from './routes/health.js';

/** A request with a body must say it is JSON; otherwise the body would be silently ignored. */
const requireJsonBody: express.RequestHandler = (req, _res, next) => {
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody && !req.is(['application/json', 'application/*+json'])) return next(new ApiError('UNSUPPORTED_MEDIA_TYPE'));
  next();
};

export interface HttpApiOptions {
  logger: Logger;
  pool: Pool;
  gateway: Gateway;
  submitter: ActuationSubmitter;
  credentials: { username: string; password: string };
  maxBodyBytes: number;
  /** Bulk submissions (up to 1,000 items) get a larger body limit than everything else. */
  maxBulkBodyBytes: number;
  isShuttingDown: () => boolean;
  /** More authenticated routes (the DSS streams and rules API, /metrics). */
  routers?: Router[];
  onTransition?: TransitionObserver;
  onDatabaseUnavailable?: () => void;
}

export function makeHttpApi(options: HttpApiOptions): express.Express {
  const { logger, pool, gateway, submitter, credentials, isShuttingDown } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use(requestLog(logger.child({ component: 'http' })));
  app.use((_req, res, next) => {
    if (!isShuttingDown()) return next();
    res.setHeader('Connection', 'close');
    next(new ApiError('SHUTTING_DOWN'));
  });

  app.use(healthRoutes(pool, isShuttingDown));
  const openApi = openApiDocument();
  app.get('/v1/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  app.get('/v1/docs', docsPage);
  app.use(basicAuth(credentials));
  app.use(requireJsonBody);
  const jsonTypes = ['application/json', 'application/*+json'];
  app.post('/v1/actuations', express.json({ limit: options.maxBulkBodyBytes, type: jsonTypes }));
  app.use(express.json({ limit: options.maxBodyBytes, type: jsonTypes }));
  app.use(deviceRoutes({ pool, gateway }));
  app.use(actuationRoutes({ pool, submitter, caller: credentials.username, onTransition: options.onTransition }));
  for (const router of options.routers ?? []) app.use(router);
  app.use(notFoundHandler);
  app.use(makeErrorHandler(options.onDatabaseUnavailable));
  return app;
}
