/**
 * The REST API as a fastify instance on its own `node:http` server: request metrics and
 * the request id first, shutdown's 503, the audit trail of mutating calls, then
 * authentication (an API key or HTTP Basic), the key's rate limit and the route's scope
 * (one `onRequest` hook running them in this order, one response listener for the metrics,
 * the request line and the audit entry), then the body (`json-body.ts`: `preParsing` and
 * the JSON parser, with the route's `bodyLimit`), the routes, the not-found handler and
 * the one error handler.
 *
 * Routing (README, "HTTP edges", for each edge and what changed from express): paths are
 * case-insensitive, one trailing slash is ignored, duplicate slashes are not
 * (`//v1/devices` is 404), and a path that does not percent-decode is 400 MALFORMED_PATH
 * before anything else runs but the request id, metrics, shutdown check and audit trail
 * (fastify's router refuses it before any route is chosen, so before authentication).
 * OPTIONS on a served path answers 200 with `Allow` (express's automatic answer, kept),
 * after authentication.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction } from 'fastify';
import type { Lifecycle } from '../actuations/lifecycle.js';
import type { ActuationSubmitter } from '../actuations/types.js';
import type { Pool } from '../db/pool.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Logger } from '../logger.js';
import type { KeyVerifier } from '../keys/key-verifier.js';
import { authenticate, authorize } from './auth.js';
import { ApiError } from './errors.js';
import { jsonBody } from './json-body.js';
import { requestId, requestLog } from './request-log.js';
import { makeErrorHandler, pathOf } from './error-handler.js';
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
import type { RequestObserver } from './request-metrics.js';
import type { RouteRegistrar } from './request-context.js';
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
  /** More authenticated routes (the DSS streams and rules API, jobs, webhooks). */
  routes?: RouteRegistrar[];
  /** Told the transitions the API makes (cancel), once committed. */
  lifecycle?: Lifecycle;
  onDatabaseUnavailable?: () => void;
  /** Readiness: resolves when this instance can commit (a write through the pool); `/readyz` fails otherwise. */
  canCommit?: () => Promise<void>;
  /** Routes that authenticate on their own (`/metrics` with its read-only credential: `config.ownAuth`). */
  ownAuthRoutes?: RouteRegistrar[];
  /** HTTP request metrics: told of every finished response (from the first hook's response listener). */
  observe?: RequestObserver;
  /** Where every mutating call is recorded (`audit.ts`); without it, nothing is. */
  auditLog?: AuditLog;
  /** API key rate limits (`rate-limit.ts`); without it, none. */
  rateLimiter?: RateLimiter;
  /** The limit of keys without their own (API_KEY_RATE_LIMIT); `undefined`: such keys are not limited. */
  defaultRateLimit?: RateLimit;
  /** A device's tokens were revoked through this instance: apply it here at once. */
  onDeviceTokensRevoked?: (revocation: Revocation) => void;
}

export interface HttpApi {
  /** The fastify instance; its `server` is the HTTP server, which answers once `ready()` resolved. */
  fastify: FastifyInstance;
  /** `method path` of every route added (without the HEAD routes fastify adds for GET ones): what the OpenAPI test compares with ROUTES. */
  routes: readonly string[];
}

type Hook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void;

/** Path parameters are checked by the schemas (with a message naming the field), not cut off by the router. */
const MAX_PARAM_LENGTH = 64 * 1024;

export function makeHttpApi(options: HttpApiOptions): HttpApi {
  const { logger, pool, gateway, submitter, credentials, isShuttingDown } = options;
  const { maxBodyBytes, maxBulkBodyBytes, maxJobBodyBytes } = options;
  const routes: string[] = [];

  // What every request gets first, also one the router refuses for a path that does not decode
  // (see `frameworkErrors`): its start noted for the metrics and the request line, its id, the
  // shutdown's 503, and (past that) the audit trail; then one response listener for all three.
  // One hook and one listener instead of four hooks and three listeners (README, issue 12).
  const { observe } = options;
  const log = requestLog(logger.child({ component: 'http' }));
  const audit = options.auditLog && auditTrail({ auditLog: options.auditLog, match: makeRouteMatcher(ROUTES) });
  const first: Hook = (request, reply, done) => {
    const startedMs = performance.now();
    const res = reply.raw;
    log.start(request, reply);
    if (isShuttingDown()) {
      res.setHeader('Connection', 'close');
      // Not audited (the audit trail began after this check when each was its own hook).
      res.once('close', () => respond(request, res, startedMs, undefined));
      return done(new ApiError('SHUTTING_DOWN'));
    }
    const auditedAt = audit?.begin(request);
    res.once('close', () => respond(request, res, startedMs, auditedAt));
    done();
  };
  // After 'finish' (a response that never finished, its client gone, has no request line nor
  // metric, as before), so the audit entry of an unfinished one is recorded here too.
  const respond = (request: FastifyRequest, res: http.ServerResponse, startedMs: number, auditedAt: Date | undefined): void => {
    if (res.writableFinished) {
      observe?.finished(request, res.statusCode, startedMs);
      log.finished(request, res.statusCode, startedMs);
    }
    if (auditedAt !== undefined) audit!.closed(request, res.statusCode, auditedAt);
  };

  const errorHandler = makeErrorHandler(options.onDatabaseUnavailable);
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => http.createServer(handler),
    genReqId: requestId,
    bodyLimit: maxBodyBytes,
    routerOptions: { caseSensitive: false, ignoreTrailingSlash: true, ignoreDuplicateSlashes: false, maxParamLength: MAX_PARAM_LENGTH },
    // Node's own plain-text answers to what is not HTTP (400, 408, 431), not fastify's JSON.
    clientErrorHandler: nodeClientError,
    // Rendered here by the error handler itself: these requests have no route, and fastify's own context for them would render its own error shape.
    frameworkErrors: (error, request, reply) => runHooks([first], request, reply, (err) => errorHandler(err ?? error, request, reply)),
  });

  const docs = new Map(ROUTES.map((route) => [`${route.method.toUpperCase()} ${route.path}`, route]));
  const limitFor = (method: string, url: string): number => {
    if (method === 'POST' && url === '/v1/actuations') return maxBulkBodyBytes;
    if ((method === 'POST' || method === 'PATCH') && /^\/v1\/(jobs|schedules)(\/:\w+)?$/.test(url)) return maxJobBodyBytes;
    return maxBodyBytes;
  };
  app.addHook('onRoute', (route) => {
    const method = [route.method].flat()[0]!.toUpperCase();
    if (method !== 'HEAD') routes.push(`${method.toLowerCase()} ${route.url}`);
    route.bodyLimit ??= limitFor(method, route.url);
    route.config = { ...route.config, doc: docs.get(`${method === 'HEAD' ? 'GET' : method} ${route.url}`), bodyLimit: route.bodyLimit };
  });

  // Then a key or the bootstrap administrator, its rate limit, and the scope the route table gives the route.
  const onRequest: Hook[] = [first, authenticate({ keys: options.keys, credentials })];
  if (options.rateLimiter) onRequest.push(rateLimit({ limiter: options.rateLimiter, defaultLimit: options.defaultRateLimit }));
  onRequest.push(authorize(ROUTES));
  app.addHook('onRequest', (request, reply, done) => runHooks(onRequest, request, reply, done));
  if (observe) app.addHook('preValidation', observe.preValidation);
  if (audit) app.addHook('preSerialization', audit.preSerialization);
  app.decorateRequest('principal', null);
  jsonBody(app);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFound());

  healthRoutes(pool, isShuttingDown, options.canCommit)(app);
  // Deliberately public: it describes the API's shape (routes, schemas, error codes), holds no data
  // and nothing that is not in the source, and client generators fetch it without credentials.
  const openApiText = JSON.stringify(openApiDocument());
  app.get('/v1/openapi.json', (_request, reply) => {
    void reply.type('application/json; charset=utf-8').send(openApiText);
  });
  app.get('/v1/docs', docsPage);
  for (const register of options.ownAuthRoutes ?? []) register(app);
  deviceRoutes({ pool, gateway })(app);
  actuationRoutes({ pool, submitter, caller: credentials.username, lifecycle: options.lifecycle })(app);
  apiKeyRoutes({ pool })(app);
  eventRoutes({ pool, feed: options.feed })(app);
  deviceTokenRoutes({ pool, onRevoked: options.onDeviceTokensRevoked })(app);
  auditRoutes({ pool })(app);
  for (const register of options.routes ?? []) register(app);
  return { fastify: app, routes };
}

/** 404 NOT_FOUND; OPTIONS on a path some route serves is 200 with `Allow` (what express answered). */
function notFound() {
  const match = makeRouteMatcher(ROUTES);
  const methods = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT'];
  return (request: FastifyRequest, reply: FastifyReply): void => {
    const path = pathOf(request);
    if (request.method === 'OPTIONS') {
      const allow = methods.filter((method) => match(method, path) !== undefined).join(', ');
      if (allow !== '') {
        void reply.code(200).header('Allow', allow).header('X-Content-Type-Options', 'nosniff').type('text/plain').send(allow);
        return;
      }
    }
    throw new ApiError('NOT_FOUND', `No route for ${request.method} ${path}`);
  };
}

/**
 * Runs `onRequest`-style hooks in order, then `then` (with the first error, if one refused, or
 * one threw), as fastify's own hook runner does: the API adds its hooks as one, so that fastify
 * runs one hook step per request instead of one per hook.
 */
function runHooks(hooks: Hook[], request: FastifyRequest, reply: FastifyReply, then: (err?: Error) => void): void {
  let i = 0;
  const next = (err?: Error): void => {
    if (err || i === hooks.length) return then(err);
    try {
      hooks[i++]!(request, reply, next as HookHandlerDoneFunction);
    } catch (thrown) {
      then(thrown as Error);
    }
  };
  next();
}

/** What Node's HTTP server does itself when no `clientError` listener is set (its `socketOnError`). */
function nodeClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const raw = socket as Duplex & { bytesWritten?: number };
  if (raw.writable && raw.bytesWritten === 0) {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    raw.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
  }
  raw.destroy(err);
}
