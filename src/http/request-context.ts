/**
 * What the REST API's fastify instance carries per route and per request, shared by the
 * hooks (`auth.ts`, `rate-limit.ts`, `audit.ts`, `request-metrics.ts`) and the routes:
 *
 * - a route's `config.doc` is its entry of the route table (ROUTES in `openapi.ts`),
 *   attached when the route is added (`api.ts`): its scope, its template, whether it is
 *   public; `config.ownAuth` marks a route that checks credentials itself (`/metrics`);
 * - a request's `principal` is the authenticated caller (`auth.ts`), null before.
 */
import type { FastifyInstance } from 'fastify';
import type { Principal } from './auth.js';
import type { RouteDoc } from './openapi.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** This route's entry of the route table; absent on the not-found handler. */
    doc?: RouteDoc;
    /** The route checks its own credentials (the API's authentication, rate limit and scope check skip it). */
    ownAuth?: boolean;
  }
  interface FastifyRequest {
    /** The authenticated caller; null until `authenticate` accepted one (and on public routes). */
    principal: Principal | null;
  }
}

/** Adds a part's routes to the API (or to the metrics server). */
export type RouteRegistrar = (app: FastifyInstance) => void;
