/** The audit log over REST: `GET /v1/audit?keyId=&since=&cursor=&limit=` (scope `admin`), oldest first. */
import type { RouteRegistrar } from '../request-context.js';
import { listAuditEntries } from '../../audit/audit-sql.js';
import { auditQuery } from '../../audit/schemas.js';
import type { Pool } from '../../db/pool.js';
import { uuidV7Floor } from '../../db/retention.js';
import { validate } from '../validate.js';

export function auditRoutes(deps: { pool: Pool }): RouteRegistrar {
  return (app) => {
    app.get('/v1/audit', async (req) => {
      const query = validate(auditQuery, req.query, 'query');
      const items = await listAuditEntries(deps.pool, {
        keyId: query.keyId ?? null,
        since: query.since === undefined ? null : new Date(query.since),
        sinceId: query.since === undefined ? null : uuidV7Floor(new Date(query.since)),
        after: query.cursor ?? null,
        limit: query.limit,
      });
      const last = items.at(-1);
      return { items, nextCursor: items.length === query.limit && last ? last.id : null };
    });
  };
}
