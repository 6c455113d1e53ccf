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
import type { RequestHandler } from 'express';
import { v7 as uuidv7 } from 'uuid';
import type { AuditLog } from '../audit/audit-log.js';
import { principalOf } from './auth.js';
import type { RouteMatcher } from './route-match.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const MAX_TARGET_LENGTH = 256;
const MAX_BULK_DEVICE_IDS = 100;

export function auditTrail(deps: { auditLog: AuditLog; match: RouteMatcher }): RequestHandler {
  return (req, res, next) => {
    if (!MUTATING.has(req.method)) return next();
    const at = new Date();
    let createdId: string | undefined;
    const json = res.json.bind(res);
    res.json = (body: unknown) => {
      const id = (body as { id?: unknown } | null)?.id;
      if (res.statusCode < 300 && typeof id === 'string') createdId = id.slice(0, MAX_TARGET_LENGTH);
      return json(body);
    };
    res.once('close', () => {
      const principal = principalOf(res);
      const matched = deps.match(req.method, req.path);
      const targets: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(matched?.params ?? {})) targets[name] = value.slice(0, MAX_TARGET_LENGTH);
      if (createdId !== undefined && createdId !== targets.id) targets.createdId = createdId;
      if (Array.isArray(req.body) && matched?.route.operationId === 'submitActuations') Object.assign(targets, bulkDevices(req.body as unknown[]));
      deps.auditLog.record({
        id: uuidv7({ msecs: at.getTime() }),
        at,
        actorKind: principal?.kind ?? 'anonymous',
        keyId: principal?.kind === 'key' ? principal.id : null,
        actor: principal?.name ?? null,
        method: req.method,
        route: matched?.route.path ?? 'unmatched',
        targets,
        status: res.statusCode,
        requestId: req.id,
        remoteAddress: req.socket.remoteAddress ?? null,
      });
    });
    next();
  };
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
