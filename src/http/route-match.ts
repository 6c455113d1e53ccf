/**
 * Finds the entry of the route table (ROUTES in `openapi.ts`) a raw path is for, with the
 * path parameters it names: case-insensitive, with an optional trailing slash, as the
 * router matches. Used where fastify chose no route: the audit log's entry for a path that
 * did not percent-decode, and the methods an OPTIONS answer lists (`api.ts`).
 */
import type { RouteDoc } from './openapi.js';

export interface RouteMatch {
  route: RouteDoc;
  /** Path parameters, percent-decoded (a parameter that does not decode is left as sent). */
  params: Record<string, string>;
}

export type RouteMatcher = (method: string, path: string) => RouteMatch | undefined;

export function makeRouteMatcher(routes: readonly RouteDoc[]): RouteMatcher {
  const table = routes.map((route) => {
    const names: string[] = [];
    const source = route.path
      .split(/(:\w+)/)
      .map((part) => {
        if (!part.startsWith(':')) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        names.push(part.slice(1));
        return '([^/]+)';
      })
      .join('');
    return { route, names, pattern: new RegExp(`^${source}/?$`, 'i') };
  });
  return (method, path) => {
    const wanted = method === 'HEAD' ? 'get' : method.toLowerCase();
    for (const { route, names, pattern } of table) {
      if (route.method !== wanted) continue;
      const match = pattern.exec(path);
      if (!match) continue;
      const params: Record<string, string> = {};
      names.forEach((name, i) => (params[name] = decodeParam(match[i + 1]!)));
      return { route, params };
    }
    return undefined;
  };
}

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
