/**
 * What the REST API's fastify instance carries per route and per request, shared by the
 * hooks (`auth.ts`, `rate-limit.ts`, `audit.ts`, `request-metrics.ts`) and the routes:
 *
 * - a route's `config.doc` is its entry of the route table (ROUTES in `openapi.ts`),
 *   attached when the route is added (`api.ts`): its scope, its template, whether it is
 *   public; `config.ownAuth` marks a route that checks credentials itself (`/metrics`);
 * - a request's `principal` is the authenticated caller (`auth.ts`), null before.
 */
import type { FastifyContextConfig, FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from './auth.js';
import type { RouteDoc } from './openapi.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** This route's entry of the route table; absent on the not-found handler. */
    doc?: RouteDoc;
    /** The route checks its own credentials (the API's authentication, rate limit and scope check skip it). */
    ownAuth?: boolean;
    /** The route's `bodyLimit` (`api.ts`), read from here: `request.routeOptions` builds an object per read. */
    bodyLimit?: number;
  }
  interface FastifyRequest {
    /** The authenticated caller; null until `authenticate` accepted one (and on public routes). */
    principal: Principal | null;
  }
}

/** Adds a part's routes to the API (or to the metrics server). */
export type RouteRegistrar = (app: FastifyInstance) => void;

const ROUTE_CONFIG = Symbol('routeConfig');

/**
 * The request's route `config` (`doc`, `ownAuth`), read once per request: fastify's
 * `request.routeOptions` is a getter that builds a new twelve-field object on every read,
 * and the hooks read the config three to four times per request.
 */
export function routeConfigOf(request: FastifyRequest): FastifyContextConfig {
  const cached = request as FastifyRequest & { [ROUTE_CONFIG]?: FastifyContextConfig };
  return (cached[ROUTE_CONFIG] ??= request.routeOptions.config);
}
