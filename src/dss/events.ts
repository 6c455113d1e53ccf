/**
 * DSS events as the rules see them. A raw event (parsed JSON from a frame) is
 * checked here; anything that is not one of the five types in the documented
 * shape is `undefined`, which the stream client counts and skips.
 */
import { z } from 'zod';

/**
 * Terminology
 * - stream: one DSS subscription's WebSocket (`dss_streams` row), held by one instance.
 * - seq: an event's position in its stream, assigned by DSS; replay starts at `seq_start`.
 * - rule: match (event type, oem model, dsn, property, condition) and action (an actuation).
 */
export const DSS_EVENT_TYPES = ['connectivity', 'datapoint', 'datapointack', 'location', 'registration'] as const;
export type DssEventType = (typeof DSS_EVENT_TYPES)[number];

/** Event types that carry a value a rule condition can test, and where it sits. */
export const VALUE_EVENT_TYPES: readonly DssEventType[] = ['datapoint', 'datapointack', 'connectivity'];

export interface DssEvent {
  seq: number;
  eventType: DssEventType;
  dsn: string;
  oemId: string | null;
  oemModel: string | null;
  /** Datapoint events only. */
  propertyName: string | null;
  /** Datapoint events only: how `value` is compared (`boolean`, `integer`, `decimal`, `string`, …). */
  baseType: string | null;
  /** datapoint(ack): `datapoint.value`; connectivity: `connection.status`; otherwise undefined. */
  value: unknown;
  /**
   * The event's own time as an ISO string (datapoint: `updated_at`; connectivity:
   * `event_time`; location: `created_at`; registration: `registered_at`/`unregistered_at`),
   * or null when it has none or it is not a date.
   */
  at: string | null;
}

const rawSeq = z.union([z.string().regex(/^\d{1,15}$/), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)]).transform(Number);
const optionalText = z.string().nullish().transform((v) => v ?? null);

const rawEventSchema = z.object({
  seq: rawSeq,
  metadata: z.object({
    event_type: z.enum(DSS_EVENT_TYPES),
    dsn: z.string().min(1),
    oem_id: optionalText,
    oem_model: optionalText,
    property_name: optionalText,
    base_type: optionalText,
  }),
  datapoint: z.object({ value: z.unknown(), updated_at: z.unknown().optional() }).optional(),
  connection: z.object({ status: z.string(), event_time: z.unknown().optional() }).optional(),
  location_event: z.object({}).loose().optional(),
  registration_event: z.object({}).loose().optional(),
});

export function toDssEvent(rawEvent: unknown): DssEvent | undefined {
  const parsed = rawEventSchema.safeParse(rawEvent);
  if (!parsed.success) return undefined;
  const { seq, metadata: m, datapoint, connection } = parsed.data;
  const event: DssEvent = {
    seq,
    eventType: m.event_type,
    dsn: m.dsn,
    oemId: m.oem_id,
    oemModel: m.oem_model,
    propertyName: null,
    baseType: null,
    value: undefined,
    at: null,
  };
  switch (m.event_type) {
    case 'datapoint':
    case 'datapointack':
      if (!datapoint || !('value' in datapoint) || m.property_name === null) return undefined;
      return { ...event, propertyName: m.property_name, baseType: m.base_type, value: datapoint.value, at: eventTime(datapoint.updated_at) };
    case 'connectivity':
      if (!connection) return undefined;
      return { ...event, value: connection.status, at: eventTime(connection.event_time) };
    case 'location': {
      const l = parsed.data.location_event;
      return l ? { ...event, at: eventTime(l['created_at']) } : undefined;
    }
    case 'registration': {
      const r = parsed.data.registration_event;
      return r ? { ...event, at: eventTime(r['registered_at'] ?? r['unregistered_at']) } : undefined;
    }
  }
}

/** An event time fit for `timestamptz`: a date string PostgreSQL reads the same way (years 1000–9999), else null. */
function eventTime(raw: unknown): string | null {
  if (typeof raw !== 'string' || raw.length > 64) return null;
  const ms = Date.parse(raw);
  if (!Number.isFinite(ms)) return null;
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  return year >= 1000 && year <= 9999 ? date.toISOString() : null;
}
