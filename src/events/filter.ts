/**
 * What one subscriber wants: one definition, used twice. A subscriber catching up
 * reads its backlog with `filterSql` (the database filters, through the indexes of
 * `events`); live events, read once per instance for every subscriber, are matched
 * with `matchesFilter`. Both must agree: `test/integration/events-feed.test.ts` checks
 * every filter on both paths.
 */
import type { EventType, FeedEvent } from './types.js';

export interface EventFilter {
  /** Only these types (none: every type). */
  types?: readonly EventType[];
  deviceId?: string;
  /** Events of this actuation (its `data.id`). */
  actuationId?: string;
  /** Actuations from this source kind (`rest`, `dss`): `data.source.kind`. */
  source?: string;
  /**
   * Set for a caller limited to accounts: only events whose `account_id` is one of them
   * (events without an account, such as DSS streams', are then never shown). Unset: all.
   */
  accounts?: readonly string[];
}

export function matchesFilter(event: FeedEvent, filter: EventFilter): boolean {
  if (filter.types && !filter.types.includes(event.type as EventType)) return false;
  if (filter.deviceId !== undefined && event.deviceId !== filter.deviceId) return false;
  if (filter.actuationId !== undefined && (!event.type.startsWith('actuation.') || event.data.id !== filter.actuationId)) return false;
  if (filter.source !== undefined && (event.data.source as { kind?: unknown } | undefined)?.kind !== filter.source) return false;
  if (filter.accounts && (event.accountId === null || !filter.accounts.includes(event.accountId))) return false;
  return true;
}

/** The filter as SQL conditions on `events` (joined with `and`), with its parameters numbered from `firstParam`. */
export function filterSql(filter: EventFilter, firstParam: number): { where: string[]; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${firstParam + params.length - 1}`;
  };
  if (filter.types) where.push(`type = any (${param(filter.types)}::text[])`);
  if (filter.deviceId !== undefined) where.push(`device_id = ${param(filter.deviceId)}`);
  // Actuation events since migration 0020 hold these in columns, older ones in `data`.
  if (filter.actuationId !== undefined) where.push(`type like 'actuation.%' and coalesce(actuation_id::text, data->>'id') = ${param(filter.actuationId)}`);
  if (filter.source !== undefined) where.push(`coalesce(source, data->'source')->>'kind' = ${param(filter.source)}`);
  if (filter.accounts) where.push(`account_id = any (${param(filter.accounts)}::text[])`);
  return { where, params };
}
