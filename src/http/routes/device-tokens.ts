/**
 * `POST /v1/devices/:deviceId/revoke-tokens` (scope `devices:write`): the device's tokens
 * issued before now are refused from now on, by every instance, and a connection that
 * authenticated with one is closed (1008) wherever it is (see `gateway/token-revocations.ts`).
 * Any device id may be revoked, also one that has never connected (a stolen token of a
 * device not yet installed), by a caller without an account limit; a key limited to
 * accounts revokes only devices of its accounts (any other answers 404, as for an unknown device).
 */
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import { deviceVisibleSql } from '../../devices/account-scope.js';
import { revokeDeviceTokens, TOKENS_REVOKED_CHANNEL, type Revocation } from '../../gateway/revocations-sql.js';
import { accountScopeOf } from '../auth.js';
import { deviceNotFound } from './devices.js';
import { deviceIdParam } from '../schemas.js';
import { validate } from '../validate.js';

export function deviceTokenRoutes(deps: { pool: Pool; onRevoked?: (revocation: Revocation) => void }): RouteRegistrar {
  return (app) => {
    app.post('/v1/devices/:deviceId/revoke-tokens', async (req) => {
      const { deviceId } = validate(deviceIdParam, req.params, 'params');
      const params: unknown[] = [deviceId, TOKENS_REVOKED_CHANNEL];
      const revocation = await revokeDeviceTokens(deps.pool, params, deviceVisibleSql('$1', accountScopeOf(req), params));
      if (!revocation) throw deviceNotFound(deviceId);
      // This instance applies it at once (the NOTIFY reaches the others, and this one too, after the commit).
      deps.onRevoked?.(revocation);
      return { deviceId: revocation.deviceId, revokedBefore: new Date(revocation.revokedBefore).toISOString() };
    });
  };
}
