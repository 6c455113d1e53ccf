/**
 * Schedule occurrences are a pure function of (cron, time zone, instant): daylight-saving
 * changes are tested with plain dates, no fake timers.
 */
import { describe, expect, it } from 'vitest';
import { isValidCron, isValidTimezone, nextOccurrence, nextOccurrences, occurrencesBetween } from '../../src/jobs/occurrences.js';

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

describe('schedule occurrences', () => {
  it('keep the local time across the spring change (New York, 2026-03-08): 09:00 EST then 09:00 EDT', () => {
    expect(iso(nextOccurrences('0 9 * * *', 'America/New_York', new Date('2026-03-07T00:00:00Z'), 3))).toEqual([
      '2026-03-07T14:00:00.000Z',
      '2026-03-08T13:00:00.000Z',
      '2026-03-09T13:00:00.000Z',
    ]);
  });

  it('fire once for a local time the spring change skips (Berlin 02:30 on 2026-03-29 does not exist): at 03:00 CEST', () => {
    expect(iso(nextOccurrences('30 2 * * *', 'Europe/Berlin', new Date('2026-03-28T00:00:00Z'), 3))).toEqual([
      '2026-03-28T01:30:00.000Z',
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
  });

  it('fire once for a local time the autumn change repeats (Berlin 02:30 on 2026-10-25 happens twice)', () => {
    const between = occurrencesBetween('30 2 * * *', 'Europe/Berlin', new Date('2026-10-24T12:00:00Z'), new Date('2026-10-26T12:00:00Z'), 10);
    expect(iso(between)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  });

  it('list what lies in (after, until], at most `limit`, so a long backlog is decided in parts', () => {
    const after = new Date('2026-12-02T10:00:00Z');
    const until = new Date('2026-12-02T10:10:00Z');
    expect(occurrencesBetween('* * * * *', 'UTC', after, until, 100)).toHaveLength(10);
    const first = occurrencesBetween('* * * * *', 'UTC', after, until, 4);
    expect(iso(first)).toEqual(['2026-12-02T10:01:00.000Z', '2026-12-02T10:02:00.000Z', '2026-12-02T10:03:00.000Z', '2026-12-02T10:04:00.000Z']);
    expect(occurrencesBetween('* * * * *', 'UTC', first.at(-1)!, until, 100)).toHaveLength(6);
    expect(nextOccurrence('0 0 29 2 *', 'UTC', new Date('2026-03-01T00:00:00Z'))!.toISOString()).toBe('2028-02-29T00:00:00.000Z');
  });

  it('validate expressions and zones', () => {
    expect(isValidCron('*/5 * * * *')).toBe(true);
    expect(isValidCron('61 * * * *')).toBe(false);
    expect(isValidCron('banana')).toBe(false);
    expect(isValidTimezone('Europe/Berlin')).toBe(true);
    expect(isValidTimezone('Mars/Olympus')).toBe(false);
  });
});
