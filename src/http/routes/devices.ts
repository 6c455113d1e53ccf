/**
 * The device registry over REST: devices known from connecting or registered ahead
 * (`PUT`), their tags and account, their sessions. Every query is limited to the caller's
 * accounts in SQL (`src/devices/account-scope.ts`): a device the caller may not see answers
 * exactly as one that does not exist.
 */
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import { scopeIncludes, type AccountScope } from '../../devices/account-scope.js';
import * as registry from '../../devices/registry-sql.js';
import { devicePatchBody, deviceListQuery, devicePutBody, MAX_TAGS, protoTagKeyMessage } from '../../devices/schemas.js';
import type { Gateway } from '../../gateway/gateway.js';
import * as sessions from '../../gateway/sessions-sql.js';
import { accountScopeOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { deviceIdParam, paginationQuery } from '../schemas.js';
import { validate } from '../validate.js';
import { mediaTypeOf } from '../json-body.js';

/** The one answer for a device that does not exist and for one of an account the caller may not see. */
export function deviceNotFound(deviceId: string): ApiError {
  return new ApiError('NOT_FOUND', `Device "${deviceId}" is not known`);
}

/** An account a caller limited to accounts names in a body must be one of them (a 400: it tells nothing about devices). */
function checkNamedAccount(scope: AccountScope, accountId: string | null | undefined, what: 'PUT' | 'PATCH'): void {
  if (scope === null || accountId === undefined) return;
  if (accountId === null || !scopeIncludes(scope, accountId)) {
    throw new ApiError('VALIDATION_FAILED', `accountId: this API key is limited to the accounts ${scope.join(', ')}; a ${what} must name one of them`);
  }
}

function noProtoTag(body: unknown): unknown {
  const message = protoTagKeyMessage(body);
  if (message) throw new ApiError('VALIDATION_FAILED', message);
  return body;
}

/** A PATCH body is a JSON merge patch: `application/merge-patch+json` (RFC 7396) or plain JSON. */
const PATCH_TYPES = ['application/merge-patch+json', 'application/json'];

export function deviceRoutes(deps: { pool: Pool; gateway: Gateway }): RouteRegistrar {
  const { pool } = deps;
  return (app) => {
    const answer = async (deviceId: string, scope: AccountScope) => {
      const device = await registry.getDevice(pool, deviceId, scope);
      if (!device) throw deviceNotFound(deviceId);
      return { ...device, session: device.online ? device.lastSession : null, accountChanges: await registry.accountChanges(pool, deviceId) };
    };

    app.get('/v1/devices', async (req) => {
      const query = validate(deviceListQuery, req.query, 'query');
      const devices = await registry.listDevices(
        pool,
        { tags: query.tag, accountId: query.accountId ?? null, online: query.online === undefined ? null : query.online === 'true', after: query.cursor ?? null, limit: query.limit },
        accountScopeOf(req),
      );
      const last = devices.at(-1);
      return { items: devices, nextCursor: devices.length === query.limit && last ? last.deviceId : null };
    });

    app.get('/v1/devices/:deviceId', async (req) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      return answer(deviceId, accountScopeOf(req));
    });

    app.put('/v1/devices/:deviceId', async (req, reply) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      const scope = accountScopeOf(req);
      const body = validate(devicePutBody, noProtoTag(req.body ?? {}), 'body');
      // A key of one account registers into it without naming it.
      if (scope !== null && body.accountId === undefined && scope.length === 1) body.accountId = scope[0]!;
      if (scope !== null) checkNamedAccount(scope, body.accountId ?? null, 'PUT');
      const outcome = await registry.putDevice(pool, deviceId, body, scope);
      // An id that exists in an account the caller may not see: the same 404 as every other route gives for it.
      if (outcome === 'not_visible') throw deviceNotFound(deviceId);
      return reply.code(outcome === 'created' ? 201 : 200).send(await answer(deviceId, scope));
    });

    app.patch('/v1/devices/:deviceId', async (req) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      if (req.body !== undefined && !PATCH_TYPES.includes(mediaTypeOf(req.headers['content-type']))) throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'A PATCH body is a JSON merge patch: Content-Type application/merge-patch+json or application/json');
      const scope = accountScopeOf(req);
      const patch = validate(devicePatchBody, noProtoTag(req.body), 'body');
      checkNamedAccount(scope, patch.accountId, 'PATCH');
      const outcome = await registry.patchDevice(pool, deviceId, patch, scope);
      if (outcome === 'not_visible') throw deviceNotFound(deviceId);
      if (outcome === 'too_many_tags') throw new ApiError('VALIDATION_FAILED', `tags: at most ${MAX_TAGS} tags (after merging the patch)`);
      return await answer(deviceId, scope);
    });

    app.get('/v1/devices/:deviceId/sessions', async (req) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      const query = validate(paginationQuery, req.query, 'query');
      const before = query.cursor === undefined ? null : Number(query.cursor);
      if (before !== null && !Number.isSafeInteger(before)) throw new ApiError('VALIDATION_FAILED', 'cursor: not a cursor from a previous page');
      const rows = await sessions.listSessions(pool, deviceId, query.limit, before, accountScopeOf(req));
      const last = rows.at(-1);
      return { items: rows, nextCursor: rows.length === query.limit && last ? String(last.id) : null };
    });
  };
}
