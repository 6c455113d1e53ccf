/** POST → device latency: from when a 2xx POST was sent to when its device first got the actuation. */
import { percentile } from '../../bench/lib/stats.js';
import type { Fleet } from './devices.js';
import type { Outcome } from './load.js';

export function deliveryLatencies(outcomes: Outcome[], fleets: Fleet[], from = 0, to = Number.POSITIVE_INFINITY): number[] {
  const out: number[] = [];
  for (const o of outcomes) {
    if (!o.id || o.sentAt < from || o.sentAt > to) continue;
    for (const fleet of fleets) {
      const first = fleet.received.get(o.id)?.[0];
      if (first) out.push(first.at - o.sentAt);
    }
  }
  return out.sort((a, b) => a - b);
}

export function p50p99(sorted: number[]): string {
  return sorted.length === 0 ? 'n/a' : `${percentile(sorted, 50)} / ${percentile(sorted, 99)} ms (${sorted.length})`;
}
