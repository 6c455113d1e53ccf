/**
 * When a schedule fires: pure functions of (cron, time zone, instant), evaluated by
 * croner, which honours time zones and daylight-saving changes (a local time skipped by
 * the spring change fires at the first valid instant after it, a local time repeated by
 * the autumn change fires once). No clock is read here, so tests give any instant.
 */
import { Cron } from 'croner';

function cronOf(cron: string, timezone: string): Cron {
  // `paused`: evaluation only, never a timer. Day-of-month and day-of-week are ORed when both are
  // given (croner's default, `domAndDow: false`), as classic cron does.
  return new Cron(cron, { timezone, paused: true });
}

export function isValidCron(cron: string): boolean {
  try {
    cronOf(cron, 'UTC');
    return true;
  } catch {
    return false;
  }
}

export function isValidTimezone(timezone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

/** The first occurrence strictly after `after`, or null when the expression has none. */
export function nextOccurrence(cron: string, timezone: string, after: Date): Date | null {
  return cronOf(cron, timezone).nextRun(after);
}

/** The next `count` occurrences strictly after `after`, in order. */
export function nextOccurrences(cron: string, timezone: string, after: Date, count: number): Date[] {
  return cronOf(cron, timezone).nextRuns(count, after);
}

/**
 * The occurrences in (after, until], in order, at most `limit` of them (the rest are
 * found by the next call, from the last one returned).
 */
export function occurrencesBetween(cron: string, timezone: string, after: Date, until: Date, limit: number): Date[] {
  const job = cronOf(cron, timezone);
  const found: Date[] = [];
  let cursor = after;
  while (found.length < limit) {
    const next = job.nextRun(cursor);
    if (next === null || next.getTime() > until.getTime()) break;
    found.push(next);
    cursor = next;
  }
  return found;
}
