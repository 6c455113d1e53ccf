/** Request schemas of the REST API (zod): validation and, later, the OpenAPI document come from here. */
import { z } from 'zod';

export const deviceIdParam = z.object({ deviceId: z.string().min(1).max(256) });

export const paginationQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(512).optional(),
});

export const devicesQuery = paginationQuery.extend({
  online: z.enum(['true', 'false']).optional(),
});

const param = z.object({ name: z.string().min(1).max(256), value: z.unknown() });

export const actuationBody = z.object({
  componentId: z.string().min(1).max(256),
  command: z.string().min(1).max(256),
  params: z.array(param).max(100).default([]),
  accountId: z.string().min(1).max(256).optional(),
  gatewayId: z.string().min(1).max(256).optional(),
});
export type ActuationBody = z.infer<typeof actuationBody>;
