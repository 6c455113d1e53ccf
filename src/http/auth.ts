/**
 * Who is calling and whether they may: `authenticate` accepts an API key
 * (`Authorization: Bearer iotws_…`) or the bootstrap administrator's HTTP Basic
 * credentials (every scope), and records the caller in `res.locals.principal`;
 * `authorize` finds the route in the route table (ROUTES in `openapi.ts`) and
 * refuses a caller without its scope (403 FORBIDDEN naming it). A path the table
 * does not describe needs `admin`, so a route added without a scope is closed, and
 * the OpenAPI test fails on it (every express route must be in the table).
 */
import type { Request, RequestHandler, Response } from 'express';
import type { AccountScope } from '../devices/account-scope.js';
import type { KeyVerifier } from '../keys/key-verifier.js';
import type { RateLimit } from '../keys/keys-sql.js';
import { grants, type Scope } from '../keys/scopes.js';
import { basicAuth } from './basic-auth.js';
import { ApiError } from './errors.js';
import type { RouteDoc } from './openapi.js';
import { makeRouteMatcher } from './route-match.js';

/** `accounts`: the accounts the caller is limited to; null = every account (see `src/devices/account-scope.ts`). */
export type Principal =
  | { kind: 'bootstrap'; name: string; scopes: readonly string[]; accounts: null }
  | { kind: 'key'; id: string; name: string; scopes: readonly string[]; accounts: readonly string[] | null; rateLimit?: RateLimit | null };

export function principalOf(res: Response): Principal | undefined {
  return res.locals.principal as Principal | undefined;
}

/** The authenticated caller's account scope; throws (a bug, 500) on a route reached without authentication, never "every account". */
export function accountScopeOf(res: Response): AccountScope {
  const principal = principalOf(res);
  if (!principal) throw new Error('accountScopeOf: no authenticated principal on this request');
  return principal.accounts;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
const KEY_FAILURES = {
  malformed: 'Bearer token is not an API key (iotws_…)',
  unknown: 'Unknown API key',
  revoked: 'API key is revoked',
  expired: 'API key has expired',
} as const;

/** Accepts an API key, or (when `credentials` are given) the bootstrap administrator's HTTP Basic credentials. */
export function authenticate(deps: { keys: KeyVerifier; credentials?: { username: string; password: string } }): RequestHandler {
  const basic = deps.credentials && basicAuth(deps.credentials);
  const bootstrap: Principal | undefined = deps.credentials && { kind: 'bootstrap', name: deps.credentials.username, scopes: ['admin'], accounts: null };
  return (req, res, next) => {
    const bearer = BEARER.exec(req.headers.authorization ?? '');
    if (bearer) {
      deps.keys.verify(bearer[1]!).then((check) => {
        if (check.ok) {
          res.locals.principal = { kind: 'key', ...check.key } satisfies Principal;
          return next();
        }
        // Both challenges, Basic first (as every other 401 of the API): either scheme is accepted.
        res.setHeader('WWW-Authenticate', 'Basic realm="iot-websocket-server", charset="UTF-8", Bearer realm="iot-websocket-server", error="invalid_token"');
        next(new ApiError('UNAUTHORIZED', KEY_FAILURES[check.reason]));
      }, next);
      return;
    }
    if (!basic) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="iot-websocket-server"');
      return next(new ApiError('UNAUTHORIZED', 'An API key is required (Authorization: Bearer iotws_…)'));
    }
    void basic(req, res, (err?: unknown) => {
      if (err === undefined || err === null) res.locals.principal = bootstrap;
      next(err);
    });
  };
}

/** 403 unless the authenticated caller holds `scope` (or `admin`). */
export function requireScope(scope: Scope): RequestHandler {
  return (_req, res, next) => {
    const principal = principalOf(res);
    if (principal && grants(principal.scopes, scope)) return next();
    next(forbidden(scope));
  };
}

export function forbidden(scope: Scope): ApiError {
  return new ApiError('FORBIDDEN', `This operation needs the scope "${scope}" (or "admin"), which this API key does not have`);
}

/** The scope every authenticated request needs, from the route table; throws at start-up for a route without one. */
export function authorize(routes: readonly RouteDoc[]): RequestHandler {
  const authenticated = routes.filter((route) => route.auth);
  for (const route of authenticated) if (!route.scope) throw new Error(`route ${route.method.toUpperCase()} ${route.path} declares no scope`);
  const match = makeRouteMatcher(authenticated);
  const scopeFor = (req: Request): Scope => match(req.method, req.path)?.route.scope ?? 'admin';
  return (req, res, next) => requireScope(scopeFor(req))(req, res, next);
}
