/**
 * Events of the five DSS types in the documented shape (the samples in the DSS
 * architecture page), from a compact description. The simulator assigns `seq`.
 */
import crypto from 'node:crypto';
import { z } from 'zod';

const common = { dsn: z.string().min(1), oemId: z.string().default('0dfc7900'), oemModel: z.string().default('linuxevb'), at: z.string().optional() };

export const compactEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('datapoint'), ...common, property: z.string().min(1), baseType: z.string().default('string'), value: z.unknown() }),
  z.object({
    type: z.literal('datapointack'),
    ...common,
    property: z.string().min(1),
    baseType: z.string().default('string'),
    value: z.unknown(),
    ackStatus: z.number().int().default(200),
  }),
  z.object({ type: z.literal('connectivity'), ...common, status: z.enum(['Online', 'Offline']).default('Online') }),
  z.object({ type: z.literal('location'), ...common, lat: z.string().default(' 44.769500'), long: z.string().default('-69.428300') }),
  z.object({ type: z.literal('registration'), ...common, registered: z.boolean().default(true) }),
]);
export type CompactEvent = z.input<typeof compactEvent>;

/** A raw DSS event without `seq`: either already in DSS shape (has `metadata`) or built from a compact description. */
export type EventInput = CompactEvent | { metadata: Record<string, unknown>; [key: string]: unknown };

export function buildEvent(input: EventInput): Record<string, unknown> {
  if ('metadata' in input && typeof input.metadata === 'object') {
    const { seq: _ignored, ...rest } = input as Record<string, unknown>;
    return rest;
  }
  const e = compactEvent.parse(input);
  const at = e.at ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const metadata = { oem_id: e.oemId, oem_model: e.oemModel, dsn: e.dsn, resource_tags: [] as string[] };
  const uuid = '40e45b84-690c-11e8-acf3-12f911dcfe40';
  switch (e.type) {
    case 'datapoint':
    case 'datapointack': {
      const datapoint: Record<string, unknown> = {
        id: crypto.randomUUID(),
        created_at_from_device: null,
        updated_at: at,
        created_at: at,
        user_uuid: uuid,
        echo: e.type === 'datapoint',
        closed: false,
        value: e.value,
        metadata: {},
      };
      if (e.type === 'datapointack') Object.assign(datapoint, { ack_message: 0, ack_status: e.ackStatus, ack_id: crypto.randomUUID(), acked_at: at });
      return {
        metadata: { ...metadata, property_name: e.property, display_name: e.property, base_type: e.baseType, event_type: e.type },
        datapoint,
      };
    }
    case 'connectivity':
      return { metadata: { ...metadata, event_type: 'connectivity' }, connection: { event_time: at, user_uuid: uuid, status: e.status } };
    case 'location':
      return {
        metadata: { ...metadata, event_type: 'location' },
        location_event: { dsn: e.dsn, ip: '67.255.234.73', lat: e.lat, long: e.long, provider: 'ip-based', user_uuid: uuid, created_at: at },
      };
    case 'registration':
      return {
        metadata: { ...metadata, event_type: 'registration' },
        registration_event: { dsn: e.dsn, user_uuid: null, registered: e.registered, registration_type: 'AP-Mode', [e.registered ? 'registered_at' : 'unregistered_at']: at },
      };
  }
}
