/**
 * The REST API as an express app: the audit trail of mutating calls, unauthenticated
 * probes, then authentication (an API key or HTTP Basic), the key's rate limit and the
 * route's scope, then the versioned routes, then the one error handler.
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
import { eventRoutes } from './routes/events.js';
import type { EventFeed } from '../events/feed.js';
import { openApiDocument, ROUTES } from './openapi.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { docsPage } from './docs-page.js';
import { healthRoutes } from './routes/health.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Revocation } from '../gateway/revocations-sql.js';
import type { RateLimit } from '../keys/keys-sql.js';
import { auditTrail } from './audit.js';
import { rateLimit, type RateLimiter } from './rate-limit.js';
import { makeRouteMatcher } from './route-match.js';
import { auditRoutes } from './routes/audit.js';
import { deviceTokenRoutes } from './routes/device-tokens.js';

export interface HttpApiOptions {
  logger: Logger;
  pool: Pool;
  gateway: Gateway;
  submitter: ActuationSubmitter;
  /** The change feed's subscribers on this instance (GET /v1/events). */
  feed: EventFeed;
  credentials: { username: string; password: string };
  /** Checks API keys (`Authorization: Bearer iotws_…`). */
  keys: KeyVerifier;
  maxBodyBytes: number;
  /** Bulk submissions (up to 1,000 items) get a larger body limit than everything else. */
  maxBulkBodyBytes: number;
  /** Jobs and schedules (up to 100,000 device ids) get the largest body limit. */
  maxJobBodyBytes: number;
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
  /** Where every mutating call is recorded (`audit.ts`); without it, nothing is. */
  auditLog?: AuditLog;
  /** API key rate limits (`rate-limit.ts`); without it, none. */
  rateLimiter?: RateLimiter;
  /** The limit of keys without their own (API_KEY_RATE_LIMIT); `undefined`: such keys are not limited. */
  defaultRateLimit?: RateLimit;
  /** A device's tokens were revoked through this instance: apply it here at once. */
  onDeviceTokensRevoked?: (revocation: Revocation) => void;
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
  if (options.auditLog) app.use(auditTrail({ auditLog: options.auditLog, match: makeRouteMatcher(ROUTES) }));

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
  if (options.rateLimiter) app.use(rateLimit({ limiter: options.rateLimiter, defaultLimit: options.defaultRateLimit }));
  app.use(authorize(ROUTES));
  const { maxBodyBytes, maxBulkBodyBytes, maxJobBodyBytes } = options;
  const limitFor = (req: express.Request): number => {
    if (req.method === 'POST' && req.path === '/v1/actuations') return maxBulkBodyBytes;
    if ((req.method === 'POST' || req.method === 'PATCH') && /^\/v1\/(jobs|schedules)(\/[^/]+)?\/?$/i.test(req.path)) return maxJobBodyBytes;
    return maxBodyBytes;
  };
  app.use(jsonBody({ limits: [maxBodyBytes, maxBulkBodyBytes, maxJobBodyBytes], limitFor }));
  app.use(deviceRoutes({ pool, gateway }));
  app.use(actuationRoutes({ pool, submitter, caller: credentials.username, lifecycle: options.lifecycle }));
  app.use(apiKeyRoutes({ pool }));
  app.use(eventRoutes({ pool, feed: options.feed }));
  app.use(deviceTokenRoutes({ pool, onRevoked: options.onDeviceTokensRevoked }));
  app.use(auditRoutes({ pool }));
  for (const router of options.routers ?? []) app.use(router);
  app.use(notFoundHandler);
  app.use(makeErrorHandler(options.onDatabaseUnavailable));
  return app;
}
