/**
 * API keys over REST: create (the secret is in this one answer only), list, read,
 * revoke. The route table gives them all the scope `keys:admin`; creating a key also
 * needs every scope it grants, so that a key cannot make a stronger key than itself.
 * A key limited to `accounts` cannot hold `keys:admin` (GLOBAL_SCOPES), so every key that
 * creates keys has no account limit, and cannot pass one on that it lacks.
 */
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import * as keys from '../../keys/keys-sql.js';
import { apiKeyCreateBody, apiKeyIdParam, MAX_LISTED_KEYS } from '../../keys/schemas.js';
import { grants } from '../../keys/scopes.js';
import { forbidden, principalOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { validate } from '../validate.js';

export function apiKeyRoutes(deps: { pool: Pool }): RouteRegistrar {
  const { pool } = deps;
  return (app) => {
    app.post('/v1/api-keys', async (req, reply) => {
      const body = validate(apiKeyCreateBody, req.body, 'body');
      const held = principalOf(req)?.scopes ?? [];
      const missing = body.scopes.find((scope) => !grants(held, scope));
      if (missing) throw forbidden(missing);
      const created = await keys.createKey(pool, {
        name: body.name,
        scopes: [...new Set(body.scopes)],
        expiresInDays: body.expiresInDays,
        accounts: body.accounts && [...new Set(body.accounts)],
        rateLimit: body.rateLimit,
      });
      return reply.code(201).send(created);
    });

    app.get('/v1/api-keys', async () => {
      return { items: await keys.listKeys(pool, MAX_LISTED_KEYS) };
    });

    app.get('/v1/api-keys/:id', async (req) => {
      const { id } = validate(apiKeyIdParam, req.params, 'params');
      const key = await keys.getKey(pool, id);
      if (!key) throw new ApiError('NOT_FOUND', `API key "${id}" does not exist`);
      return key;
    });

    app.delete('/v1/api-keys/:id', async (req) => {
      const { id } = validate(apiKeyIdParam, req.params, 'params');
      const key = await keys.revokeKey(pool, id);
      if (!key) throw new ApiError('NOT_FOUND', `API key "${id}" does not exist`);
      return key;
    });
  };
}
