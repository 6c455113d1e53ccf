/**
 * The change feed's vocabulary. An event is `{id, type, at, data}`: `id` its position
 * (only grows, assigned after its transaction committed; see migration 0019), `at` the
 * time of its transaction, `data` the payload of its kind (README, "Change feed").
 */
export const ACTUATION_EVENT_TYPES = [
  'actuation.queued',
  'actuation.sent',
  'actuation.acked',
  'actuation.failed',
  'actuation.expired',
  'actuation.timed_out',
  'actuation.cancelled',
  'actuation.superseded',
] as const;
export const EVENT_TYPES = [
  ...ACTUATION_EVENT_TYPES,
  'device.connected',
  'device.disconnected',
  'dss.stream.connected',
  'dss.stream.disconnected',
  'dss.stream.error',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** `pg_notify('iotws_events', <last id>)` after each sequencing pass (migration 0011's contract). */
export const EVENTS_CHANNEL = 'iotws_events';

/** A row of `events`, as read (`deviceId`/`accountId` are the indexed copies out of `data`). */
export interface FeedEvent {
  id: number;
  type: string;
  at: Date;
  data: Record<string, unknown>;
  deviceId: string | null;
  accountId: string | null;
}
