/**
 * What an API key may do. Each REST route declares the one scope it needs
 * (`src/http/openapi.ts`, ROUTES); `admin` holds every scope, and the bootstrap
 * administrator (HTTP Basic, API_USERNAME/API_PASSWORD) is `admin`.
 */
export const SCOPES = ['actuations:write', 'actuations:read', 'devices:read', 'devices:write', 'dss:admin', 'keys:admin', 'metrics:read', 'webhooks:admin', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Whether `held` grants `needed`: the scope itself, or `admin`. */
export function grants(held: readonly string[], needed: Scope): boolean {
  return held.includes('admin') || held.includes(needed);
}
