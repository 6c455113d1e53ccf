import crypto from 'node:crypto';
import { Router } from 'express';
import type { Gateway } from '../../gateway/gateway.js';
import { actuationMessage } from '../../gateway/protocol.js';
import { ApiError } from '../errors.js';
import { actuationBody, deviceIdParam } from '../schemas.js';
import { validate } from '../validate.js';

/** Pushes an actuation to a device connected to this instance (the durable queue replaces this). */
export function actuationRoutes(deps: { gateway: Gateway }): Router {
  const router = Router();
  router.post('/v1/devices/:deviceId/actuations', (req, res) => {
    const { deviceId } = validate(deviceIdParam, req.params, 'params');
    const body = validate(actuationBody, req.body);
    const connection = deps.gateway.connectionOf(deviceId);
    if (!connection) throw new ApiError('DEVICE_NOT_CONNECTED', `Device "${deviceId}" has no open connection to this instance`);
    const id = crypto.randomUUID();
    const sent = connection.send(
      actuationMessage(id, {
        accountId: body.accountId ?? connection.accountId,
        deviceId,
        gatewayId: body.gatewayId ?? deviceId,
        componentId: body.componentId,
        command: body.command,
        params: body.params,
      }),
    );
    if (!sent) throw new ApiError('DEVICE_NOT_CONNECTED', `Device "${deviceId}" disconnected`);
    res.status(202).json({ id, status: 'sent' });
  });
  return router;
}
