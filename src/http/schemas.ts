/** Request schemas of the REST API (zod): validation and, later, the OpenAPI document come from here. */
import { z } from 'zod';
import { ACTUATION_STATUSES } from '../actuations/types.js';
import { EVENT_TYPES } from '../events/types.js';

export const deviceIdParam = z.object({ deviceId: z.string().min(1).max(256) });

export const paginationQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(512).optional(),
});

const param = z.object({ name: z.string().min(1).max(256), value: z.unknown() });

export const actuationBody = z.strictObject({
  componentId: z.string().min(1).max(256),
  command: z.string().min(1).max(256),
  params: z.array(param).max(100).default([]),
  accountId: z.string().min(1).max(256).optional(),
  gatewayId: z.string().min(1).max(256).optional(),
  /** Seconds until the actuation expires if not delivered (and acked); 0 = never. */
  ttlSeconds: z.number().int().min(0).max(365 * 86_400).optional(),
  /** Seconds a sent actuation may wait for the device's ack before it is timed_out. */
  ackTimeoutSeconds: z.number().int().min(1).max(365 * 86_400).optional(),
  /** A newer queued actuation with the same key supersedes older queued ones of the device. */
  collapseKey: z.string().min(1).max(256).optional(),
});
export type ActuationBody = z.infer<typeof actuationBody>;

export const idempotencyKeyHeader = z.string().min(1).max(256).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

export const bulkActuationItem = actuationBody.extend({
  deviceId: z.string().min(1).max(256),
  idempotencyKey: idempotencyKeyHeader.optional(),
});
export const MAX_BULK_ITEMS = 1_000;
export const bulkActuationsBody = z.array(z.unknown()).min(1).max(MAX_BULK_ITEMS);

export const actuationIdParam = z.object({ id: z.string().uuid() });

export const deviceActuationsQuery = paginationQuery.extend({
  status: z.enum(ACTUATION_STATUSES).optional(),
});

/** `GET /v1/events`: filters, and where to start (`Last-Event-ID` wins over `after`). */
export const eventIdText = z.string().regex(/^\d{1,15}$/, 'an event id (digits)');
export const eventsQuery = z.object({
  types: z
    .string()
    .max(1_000)
    .refine((s) => s.split(',').every((t) => (EVENT_TYPES as readonly string[]).includes(t.trim())), `a comma-separated list of event types (${EVENT_TYPES.join(', ')})`)
    .optional(),
  deviceId: z.string().min(1).max(256).optional(),
  actuationId: z.string().uuid().optional(),
  source: z.enum(['rest', 'dss']).optional(),
  after: eventIdText.optional(),
});
