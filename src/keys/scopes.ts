/**
 * What an API key may do. Each REST route declares the one scope it needs
 * (`src/http/openapi.ts`, ROUTES); `admin` holds every scope, and the bootstrap
 * administrator (HTTP Basic, API_USERNAME/API_PASSWORD) is `admin`.
 */
export const SCOPES = ['actuations:write', 'actuations:read', 'events:read', 'devices:read', 'devices:write', 'dss:admin', 'jobs:write', 'jobs:read', 'keys:admin', 'metrics:read', 'webhooks:admin', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * Scopes over things that belong to no account (DSS streams and rules, API keys, the
 * server's metrics, and `admin`, which holds them all). A key limited to accounts cannot
 * hold them (refused at creation, 400): every route its remaining scopes open is one
 * whose answers are filtered by account (`src/devices/account-scope.ts`).
 */
export const GLOBAL_SCOPES: readonly Scope[] = ['dss:admin', 'keys:admin', 'metrics:read', 'admin'];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Whether `held` grants `needed`: the scope itself, or `admin`. */
export function grants(held: readonly string[], needed: Scope): boolean {
  return held.includes('admin') || held.includes(needed);
}
