/**
 * Actuations over REST: submit (one or in bulk), follow, list, cancel.
 * Every accepted actuation is committed before the answer (202 created, 200 for a
 * repeated Idempotency-Key).
 */
import type { FastifyRequest } from 'fastify';
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import * as queries from '../../actuations/query-sql.js';
import type { Lifecycle } from '../../actuations/lifecycle.js';
import { cancelQueued } from '../../actuations/transitions-sql.js';
import type { ActuationSource, ActuationSubmitter, NewActuation, SubmitResult } from '../../actuations/types.js';
import { visibleDeviceIds } from '../../devices/registry-sql.js';
import { scopeIncludes, type AccountScope } from '../../devices/account-scope.js';
import { accountScopeOf, principalOf } from '../auth.js';
import { toApiError } from '../error-handler.js';
import { ApiError } from '../errors.js';
import {
  actuationBody,
  actuationIdParam,
  bulkActuationItem,
  bulkActuationsBody,
  deviceActuationsQuery,
  deviceIdParam,
  idempotencyKeyHeader,
  type ActuationBody,
} from '../schemas.js';
import { issueMessage, unstorableMessage, validate } from '../validate.js';
import { bulkResultsJson, submittedActuationResponse, type BulkResult } from '../serializers.js';
import { deviceNotFound } from './devices.js';

export function actuationRoutes(deps: { pool: Pool; submitter: ActuationSubmitter; caller: string; lifecycle?: Lifecycle }): RouteRegistrar {
  const { pool, submitter } = deps;
  return (app) => {
    /** The request's `source`, shared by the items of a bulk request (nothing changes a submission's source). */
    const sourceOf = (req: FastifyRequest): ActuationSource => ({ kind: 'rest', caller: callerOf(req, deps.caller), requestId: String(req.id) });
    // Field by field, not spread: a spread of zod's output per item was the route's largest
    // self time in a CPU profile of bulk submissions (README, issue 12).
    const toNew = (source: ActuationSource, deviceId: string, body: ActuationBody, idempotencyKey: string | undefined): NewActuation => ({
      deviceId,
      componentId: body.componentId,
      command: body.command,
      params: body.params,
      accountId: body.accountId,
      gatewayId: body.gatewayId,
      ttlSeconds: body.ttlSeconds,
      ackTimeoutSeconds: body.ackTimeoutSeconds,
      collapseKey: body.collapseKey,
      idempotencyKey,
      source,
    });

    app.post('/v1/devices/:deviceId/actuations', { schema: { response: submittedActuationResponse } }, async (req, reply) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      const rawKey = req.headers['idempotency-key'];
      const idempotencyKey = rawKey === undefined ? undefined : validate(idempotencyKeyHeader, rawKey, 'Idempotency-Key');
      const body = validate(actuationBody, req.body);
      const scope = accountScopeOf(req);
      checkActuationAccount(scope, body.accountId);
      const visible = scope === null ? undefined : await commandable(pool, scope, [deviceId]);
      if (visible && !visible.has(deviceId)) throw deviceNotFound(deviceId);
      const result = await submitter.submit(toNew(sourceOf(req), deviceId, body, idempotencyKey));
      if (result.outcome === 'queue_full') {
        throw new ApiError('QUEUE_FULL', `Device "${deviceId}" already has ${result.limit} queued actuations (MAX_QUEUED_PER_DEVICE); nothing was added`);
      }
      return reply.code(result.outcome === 'created' ? 202 : 200).send(result.actuation);
    });

    app.post('/v1/actuations', async (req, reply) => {
      // Only the array's shape is checked as a whole: what is wrong inside one item is that item's 400.
      const array = bulkActuationsBody.safeParse(req.body);
      if (!array.success) throw new ApiError('VALIDATION_FAILED', issueMessage(array.error));
      const scope = accountScopeOf(req);
      // Each item is validated and answered on its own; valid ones go through the same durable path.
      const parsedItems = array.data.map((raw) => {
        const unstorable = unstorableMessage(raw, 'item');
        if (unstorable !== undefined) return { error: unstorable };
        const parsed = bulkActuationItem.safeParse(raw);
        if (!parsed.success) return { error: issueMessage(parsed.error, 'item') };
        if (scope !== null && parsed.data.accountId !== undefined && !scopeIncludes(scope, parsed.data.accountId)) return { error: accountMessage(scope) };
        return { item: parsed.data };
      });
      const visible = scope === null ? undefined : await commandable(pool, scope, parsedItems.flatMap((p) => (p.item ? [p.item.deviceId] : [])));
      const source = sourceOf(req);
      const results = await Promise.all(
        parsedItems.map(async (parsed, index): Promise<BulkResult> => {
          if (!parsed.item) return { index, status: 400, error: { code: 'VALIDATION_FAILED', message: parsed.error } };
          const item = parsed.item;
          const deviceId = item.deviceId;
          if (visible && !visible.has(deviceId)) {
            const notFound = deviceNotFound(deviceId);
            return { index, status: notFound.status, error: { code: notFound.code, message: notFound.message } };
          }
          let result: SubmitResult;
          try {
            result = await submitter.submit(toNew(source, deviceId, item, item.idempotencyKey));
          } catch (err) {
            // One item's failure is that item's answer: the others may be committed already, and a
            // 500 for the whole array would make the caller resubmit them. Only a database that is
            // down fails the request as a whole (every item would fail the same way).
            const apiError = toApiError(err);
            if (apiError.code === 'DATABASE_UNAVAILABLE' || apiError.code === 'SHUTTING_DOWN') throw err;
            if (apiError.status >= 500) req.raw.log.error({ err, index }, `bulk item failed: ${apiError.code}`);
            return { index, status: apiError.status, error: { code: apiError.code, message: apiError.message } };
          }
          if (result.outcome === 'queue_full') {
            return { index, status: 429, error: { code: 'QUEUE_FULL', message: `Device "${deviceId}" already has ${result.limit} queued actuations` } };
          }
          return { index, status: result.outcome === 'created' ? 202 : 200, actuation: result.actuation };
        }),
      );
      return reply.code(200).type('application/json; charset=utf-8').serializer(bulkResultsJson).send({ results });
    });

    app.get('/v1/actuations/:id', async (req) => {
      const { id } = validate(actuationIdParam, req.params, 'params');
      const actuation = await queries.getActuation(pool, id, accountScopeOf(req));
      if (!actuation) throw new ApiError('NOT_FOUND', `No actuation ${id}`);
      return actuation;
    });

    app.delete('/v1/actuations/:id', async (req) => {
      const { id } = validate(actuationIdParam, req.params, 'params');
      const result = await cancelQueued(pool, id, accountScopeOf(req), deps.lifecycle);
      if (!result) throw new ApiError('NOT_FOUND', `No actuation ${id}`);
      if (!result.cancelled) throw new ApiError('CONFLICT', `Actuation ${id} is ${result.status}; only queued actuations can be cancelled`);
      return { id, status: result.status };
    });

    app.get('/v1/devices/:deviceId/actuations', async (req) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      const query = validate(deviceActuationsQuery, req.query, 'query');
      const beforeSeq = query.cursor === undefined ? null : Number(query.cursor);
      if (beforeSeq !== null && !Number.isSafeInteger(beforeSeq)) throw new ApiError('VALIDATION_FAILED', 'cursor: not a cursor from a previous page');
      const items = await queries.listDeviceActuations(pool, deviceId, { status: query.status ?? null, limit: query.limit, beforeSeq }, accountScopeOf(req));
      const last = items.at(-1);
      return { items, nextCursor: items.length === query.limit && last ? String(last.seq) : null };
    });
  };
}

/**
 * For a caller limited to accounts, the devices of `deviceIds` it may command (one query for a
 * whole bulk request); a device of another account, of none, or unknown, is answered
 * `deviceNotFound` alike. Callers without a limit skip it (no query, no await: every device).
 */
function commandable(pool: Pool, scope: readonly string[], deviceIds: string[]): Promise<Set<string>> {
  return visibleDeviceIds(pool, deviceIds, scope);
}

function accountMessage(scope: readonly string[]): string {
  return `accountId: this API key is limited to the accounts ${scope.join(', ')}; an actuation's accountId must be one of them`;
}

/** An actuation's `accountId` (sent to the device) from a caller limited to accounts must be one of theirs (also a job's or schedule's actuation). */
export function checkActuationAccount(scope: AccountScope, accountId: string | undefined): void {
  if (scope !== null && accountId !== undefined && !scopeIncludes(scope, accountId)) throw new ApiError('VALIDATION_FAILED', accountMessage(scope));
}

/** Who submitted, for the actuation's `source.caller`: `apikey:<id>` for a key, the username for the bootstrap administrator. */
export function callerOf(req: FastifyRequest, fallback: string): string {
  const principal = principalOf(req);
  if (!principal) return fallback;
  return principal.kind === 'key' ? `apikey:${principal.id}` : principal.name;
}
