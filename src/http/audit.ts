/**
 * The audit trail of the REST API: every mutating call (POST, PUT, PATCH, DELETE) that
 * reaches the API, answered or refused (401, 403, 429 included), becomes one entry in the
 * audit log after its answer: who (the API key, the bootstrap administrator, or
 * `anonymous` for a refused credential, whose user name is not kept), the method, the
 * route template, the ids it named, the status, the request id, the TCP peer and when.
 *
 * Never a body, a query string or a header: the only values taken from a call are its
 * path parameters (the route table's, truncated to 256 characters), the `id` of what
 * it created (from the answer; a created key's secret, `key`, is never looked at), and a
 * bulk submission's device ids (at most 100, with their count).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { uuidV7At } from '../actuations/actuation-ids.js';
import type { AuditLog } from '../audit/audit-log.js';
import { principalOf } from './auth.js';
import { pathOf } from './error-handler.js';
import type { RouteDoc } from './openapi.js';
import type { RouteMatcher } from './route-match.js';
import { routeConfigOf } from './request-context.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const MAX_TARGET_LENGTH = 256;
const MAX_BULK_DEVICE_IDS = 100;

const CREATED_ID = Symbol('auditCreatedId');
type AuditedRequest = FastifyRequest & { [CREATED_ID]?: string };

/**
 * `begin` (from the API's first `onRequest` hook) notes when a mutating call arrived (and
 * returns it; `undefined` for other calls); `closed` (from its one response listener, once
 * the response is closed, finished or not) records the entry; `preSerialization` (a hook)
 * notes the `id` of a created thing from the answer before it is serialized. The route and
 * its parameters are the ones fastify chose (also for a request refused before its handler:
 * 401, 429); for a path that did not decode, the route table's match of the raw path (`match`).
 */
export function auditTrail(deps: { auditLog: AuditLog; match: RouteMatcher }) {
  return {
    begin(request: FastifyRequest): Date | undefined {
      return MUTATING.has(request.method) ? new Date() : undefined;
    },
    closed(request: FastifyRequest, statusCode: number, at: Date): void {
      const principal = principalOf(request);
      const matched = routeOf(request) ?? deps.match(request.method, pathOf(request));
      const targets: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(matched?.params ?? {})) targets[name] = value.slice(0, MAX_TARGET_LENGTH);
      const createdId = (request as AuditedRequest)[CREATED_ID];
      if (createdId !== undefined && createdId !== targets.id) targets.createdId = createdId;
      const body = request.body;
      if (Array.isArray(body) && matched?.route.operationId === 'submitActuations') Object.assign(targets, bulkDevices(body as unknown[]));
      deps.auditLog.record({
        id: uuidV7At(at.getTime()),
        at,
        actorKind: principal?.kind ?? 'anonymous',
        keyId: principal?.kind === 'key' ? principal.id : null,
        actor: principal?.name ?? null,
        method: request.method,
        route: matched?.route.path ?? 'unmatched',
        targets,
        status: statusCode,
        requestId: request.id,
        remoteAddress: request.raw.socket.remoteAddress ?? null,
      });
    },
    preSerialization(request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
      if (MUTATING.has(request.method) && reply.statusCode < 300) {
        const id = (payload as { id?: unknown } | null)?.id;
        if (typeof id === 'string') (request as AuditedRequest)[CREATED_ID] = id.slice(0, MAX_TARGET_LENGTH);
      }
      done(null, payload);
    },
  };
}

/** The route fastify chose and its decoded parameters; `undefined` when none was (404, or a path that did not decode). */
function routeOf(request: FastifyRequest): { route: RouteDoc; params: Record<string, string> } | undefined {
  const route = routeConfigOf(request).doc;
  if (!route || request.is404) return undefined;
  return { route, params: (request.params ?? {}) as Record<string, string> };
}

/** The distinct device ids of a bulk submission (at most 100) and how many items it had. */
function bulkDevices(items: unknown[]): { deviceIds: string[]; items: number } {
  const ids = new Set<string>();
  for (const item of items) {
    if (ids.size >= MAX_BULK_DEVICE_IDS) break;
    const deviceId = (item as { deviceId?: unknown } | null)?.deviceId;
    if (typeof deviceId === 'string') ids.add(deviceId.slice(0, MAX_TARGET_LENGTH));
  }
  return { deviceIds: [...ids], items: items.length };
}
