import { Router } from 'express';
import type { Pool } from '../../db/pool.js';
import type { Gateway } from '../../gateway/gateway.js';
import * as sessions from '../../gateway/sessions-sql.js';
import { ApiError } from '../errors.js';
import { deviceIdParam, devicesQuery, paginationQuery } from '../schemas.js';
import { validate } from '../validate.js';

/** Devices as seen through their sessions, across all instances sharing the database. */
export function deviceRoutes(deps: { pool: Pool; gateway: Gateway }): Router {
  const { pool } = deps;
  const router = Router();

  router.get('/v1/devices', async (req, res) => {
    const query = validate(devicesQuery, req.query, 'query');
    const devices = await sessions.listDevices(pool, query.online === undefined ? null : query.online === 'true', query.limit, query.cursor ?? null);
    const last = devices.at(-1);
    res.json({
      items: devices.map((d) => ({ deviceId: d.deviceId, online: d.online, lastSession: d.lastSession })),
      nextCursor: devices.length === query.limit && last ? last.deviceId : null,
    });
  });

  router.get('/v1/devices/:deviceId', async (req, res) => {
    const { deviceId } = validate(deviceIdParam, req.params, 'params');
    const latest = await sessions.latestSession(pool, deviceId);
    if (!latest) throw new ApiError('NOT_FOUND', `Device "${deviceId}" has never connected`);
    const online = latest.disconnectedAt === null;
    res.json({ deviceId, online, session: online ? latest : null, lastSession: latest });
  });

  router.get('/v1/devices/:deviceId/sessions', async (req, res) => {
    const { deviceId } = validate(deviceIdParam, req.params, 'params');
    const query = validate(paginationQuery, req.query, 'query');
    const before = query.cursor === undefined ? null : Number(query.cursor);
    if (before !== null && !Number.isSafeInteger(before)) throw new ApiError('VALIDATION_FAILED', 'cursor: not a cursor from a previous page');
    const rows = await sessions.listSessions(pool, deviceId, query.limit, before);
    const last = rows.at(-1);
    res.json({ items: rows, nextCursor: rows.length === query.limit && last ? String(last.id) : null });
  });

  return router;
}
