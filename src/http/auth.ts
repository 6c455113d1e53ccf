/**
 * Who is calling and whether they may: `authenticate` accepts an API key
 * (`Authorization: Bearer iotws_…`) or the bootstrap administrator's HTTP Basic
 * credentials (every scope), and records the caller in `request.principal`;
 * `authorize` takes the scope from the route's entry of the route table (ROUTES in
 * `openapi.ts`, attached as `config.doc` by `api.ts`) and refuses a caller without it
 * (403 FORBIDDEN naming it). A route without an entry (and the not-found handler)
 * needs `admin`, so a route added without a scope is closed, and the OpenAPI test
 * fails on it (every route served must be in the table).
 *
 * All three are fastify `onRequest` hooks, skipped by public routes (`auth: false` in the
 * table) and by routes that check credentials themselves (`config.ownAuth`: `/metrics`).
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { AccountScope } from '../devices/account-scope.js';
import type { KeyVerifier } from '../keys/key-verifier.js';
import type { RateLimit } from '../keys/keys-sql.js';
import { grants, type Scope } from '../keys/scopes.js';
import { BASIC_CHALLENGE, basicAuth } from './basic-auth.js';
import { ApiError } from './errors.js';
import type { RouteDoc } from './openapi.js';
import { routeConfigOf } from './request-context.js';

/** `accounts`: the accounts the caller is limited to; null = every account (see `src/devices/account-scope.ts`). */
export type Principal =
  | { kind: 'bootstrap'; name: string; scopes: readonly string[]; accounts: null }
  | { kind: 'key'; id: string; name: string; scopes: readonly string[]; accounts: readonly string[] | null; rateLimit?: RateLimit | null };

type Hook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void;

export function principalOf(request: FastifyRequest): Principal | undefined {
  return request.principal ?? undefined;
}

/** The authenticated caller's account scope; throws (a bug, 500) on a route reached without authentication, never "every account". */
export function accountScopeOf(request: FastifyRequest): AccountScope {
  const principal = principalOf(request);
  if (!principal) throw new Error('accountScopeOf: no authenticated principal on this request');
  return principal.accounts;
}

/** Public routes and routes with their own credential check skip the API's authentication, rate limit and scope check. */
export function checksOwnAccess(request: FastifyRequest): boolean {
  const config = routeConfigOf(request);
  return config.ownAuth === true || config.doc?.auth === false;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
const KEY_FAILURES = {
  malformed: 'Bearer token is not an API key (iotws_…)',
  unknown: 'Unknown API key',
  revoked: 'API key is revoked',
  expired: 'API key has expired',
} as const;

/**
 * Accepts an API key, or (when `credentials` are given) the bootstrap administrator's HTTP
 * Basic credentials, and records the caller in `request.principal`. `all`: also on routes
 * that check their own access (the check `/metrics` runs for itself).
 */
export function authenticate(deps: { keys: KeyVerifier; credentials?: { username: string; password: string }; all?: boolean }): Hook {
  const basic = deps.credentials && basicAuth(deps.credentials);
  const bootstrap: Principal | undefined = deps.credentials && { kind: 'bootstrap', name: deps.credentials.username, scopes: ['admin'], accounts: null };
  return (request, reply, done) => {
    if (!deps.all && checksOwnAccess(request)) return done();
    const bearer = BEARER.exec(request.headers.authorization ?? '');
    if (bearer) {
      deps.keys.verify(bearer[1]!).then((check) => {
        if (check.ok) {
          request.principal = { kind: 'key', ...check.key } satisfies Principal;
          return done();
        }
        // Both challenges, Basic first (as every other 401 of the API): either scheme is accepted.
        reply.raw.setHeader('WWW-Authenticate', 'Basic realm="iot-websocket-server", charset="UTF-8", Bearer realm="iot-websocket-server", error="invalid_token"');
        done(new ApiError('UNAUTHORIZED', KEY_FAILURES[check.reason]));
      }, done);
      return;
    }
    if (!basic) {
      reply.raw.setHeader('WWW-Authenticate', 'Bearer realm="iot-websocket-server"');
      return done(new ApiError('UNAUTHORIZED', 'An API key is required (Authorization: Bearer iotws_…)'));
    }
    const refused = basic(request.headers);
    if (refused) {
      reply.raw.setHeader('WWW-Authenticate', BASIC_CHALLENGE);
      return done(refused);
    }
    request.principal = bootstrap!;
    done();
  };
}

/** The 403 unless the authenticated caller holds `scope` (or `admin`); `undefined` when it does. */
export function scopeRefusal(request: FastifyRequest, scope: Scope): ApiError | undefined {
  const principal = principalOf(request);
  return principal && grants(principal.scopes, scope) ? undefined : forbidden(scope);
}

export function forbidden(scope: Scope): ApiError {
  return new ApiError('FORBIDDEN', `This operation needs the scope "${scope}" (or "admin"), which this API key does not have`);
}

/** The scope every authenticated request needs, from its route's entry of the table; throws at start-up for a route without one. */
export function authorize(routes: readonly RouteDoc[]): Hook {
  for (const route of routes) if (route.auth && !route.scope) throw new Error(`route ${route.method.toUpperCase()} ${route.path} declares no scope`);
  return (request, _reply, done) => {
    if (checksOwnAccess(request)) return done();
    done(scopeRefusal(request, routeConfigOf(request).doc?.scope ?? 'admin'));
  };
}
