/**
 * The REST API as an express app: unauthenticated probes, then authentication (an
 * API key or HTTP Basic) and the route's scope, then the versioned routes, then the one error handler.
 */
import express, { type Router } from 'express';
import type { Lifecycle } from '../actuations/lifecycle.js';
import type { ActuationSubmitter } from '../actuations/types.js';
import type { Pool } from '../db/pool.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Logger } from '../logger.js';
import type { KeyVerifier } from '../keys/key-verifier.js';
import { authenticate, authorize } from './auth.js';
import { ApiError } from './errors.js';
import { jsonBody } from './json-body.js';
import { requestLog } from './request-log.js';
import { makeErrorHandler, notFoundHandler } from './error-handler.js';
import { actuationRoutes } from './routes/actuations.js';
import { deviceRoutes } from './routes/devices.js';
import { openApiDocument, ROUTES } from './openapi.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { docsPage } from './docs-page.js';
import { healthRoutes } from './routes/health.js';

export interface HttpApiOptions {
  logger: Logger;
  pool: Pool;
  gateway: Gateway;
  submitter: ActuationSubmitter;
  credentials: { username: string; password: string };
  /** Checks API keys (`Authorization: Bearer iotws_…`). */
  keys: KeyVerifier;
  maxBodyBytes: number;
  /** Bulk submissions (up to 1,000 items) get a larger body limit than everything else. */
  maxBulkBodyBytes: number;
  isShuttingDown: () => boolean;
  /** More authenticated routes (the DSS streams and rules API, /metrics). */
  routers?: Router[];
  /** Told the transitions the API makes (cancel), once committed. */
  lifecycle?: Lifecycle;
  onDatabaseUnavailable?: () => void;
  /** Readiness: resolves when this instance can commit (a write through the pool); `/readyz` fails otherwise. */
  canCommit?: () => Promise<void>;
  /** Routes that authenticate on their own (`/metrics` with its read-only credential), before the API's Basic auth. */
  ownAuthRouters?: Router[];
  /** Runs first on every request (HTTP request metrics). */
  observe?: express.RequestHandler;
}

export function makeHttpApi(options: HttpApiOptions): express.Express {
  const { logger, pool, gateway, submitter, credentials, isShuttingDown } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  if (options.observe) app.use(options.observe);
  app.use(requestLog(logger.child({ component: 'http' })));
  app.use((_req, res, next) => {
    if (!isShuttingDown()) return next();
    res.setHeader('Connection', 'close');
    next(new ApiError('SHUTTING_DOWN'));
  });

  app.use(healthRoutes(pool, isShuttingDown, options.canCommit));
  // Deliberately public: it describes the API's shape (routes, schemas, error codes), holds no data
  // and nothing that is not in the source, and client generators fetch it without credentials.
  const openApi = openApiDocument();
  app.get('/v1/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  app.get('/v1/docs', docsPage);
  for (const router of options.ownAuthRouters ?? []) app.use(router);
  // A key or the bootstrap administrator, then the scope the route table gives the route.
  app.use(authenticate({ keys: options.keys, credentials }));
  app.use(authorize(ROUTES));
  const { maxBodyBytes, maxBulkBodyBytes } = options;
  app.use(jsonBody({ limits: [maxBodyBytes, maxBulkBodyBytes], limitFor: (req) => (req.method === 'POST' && req.path === '/v1/actuations' ? maxBulkBodyBytes : maxBodyBytes) }));
  app.use(deviceRoutes({ pool, gateway }));
  app.use(actuationRoutes({ pool, submitter, caller: credentials.username, lifecycle: options.lifecycle }));
  app.use(apiKeyRoutes({ pool }));
  for (const router of options.routers ?? []) app.use(router);
  app.use(notFoundHandler);
  app.use(makeErrorHandler(options.onDatabaseUnavailable));
  return app;
}
