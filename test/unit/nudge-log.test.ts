import { describe, expect, it } from 'vitest';
import { makeNudgeLog } from '../../src/actuations/nudge-log.js';

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('nudge log', () => {
  it('says whether a device was nudged at or after a time', () => {
    const c = clock();
    const log = makeNudgeLog({ now: c.now, generationMs: 1_000 });
    c.advance(10);
    const since = c.now();
    expect(log.nudgedSince('a', since)).toBe(false);
    c.advance(5);
    log.record(['a']);
    expect(log.nudgedSince('a', since)).toBe(true);
    expect(log.nudgedSince('b', since)).toBe(false);
    // Nudged before `since`: not a nudge the caller could have missed.
    c.advance(5);
    expect(log.nudgedSince('a', c.now())).toBe(false);
  });

  it('answers true for everyone after nudgeAll', () => {
    const c = clock();
    const log = makeNudgeLog({ now: c.now });
    c.advance(10);
    const since = c.now();
    c.advance(1);
    log.recordAll();
    expect(log.nudgedSince('anyone', since)).toBe(true);
    c.advance(1);
    expect(log.nudgedSince('anyone', c.now())).toBe(false);
  });

  it('keeps two generations, and does not deny what it has forgotten', () => {
    const c = clock();
    const log = makeNudgeLog({ now: c.now, generationMs: 1_000 });
    c.advance(10);
    const since = c.now();
    c.advance(1);
    log.record(['a']);
    c.advance(1_000); // a new generation: 'a' is in the older one
    log.record(['b']);
    expect(log.nudgedSince('a', since)).toBe(true);
    expect(log.nudgedSince('c', since)).toBe(false);
    c.advance(1_000); // 'a' is gone, and with it what the log knew of `since`
    expect(log.nudgedSince('c', since)).toBe(true);
    expect(log.nudgedSince('c', c.now())).toBe(false);
  });

  it('is bounded: a full generation starts the next, and what fell out reads as nudged', () => {
    const c = clock();
    const log = makeNudgeLog({ now: c.now, maxPerGeneration: 2 });
    c.advance(10);
    const since = c.now();
    c.advance(1);
    log.record(['a', 'b', 'c', 'd', 'e']);
    expect(log.nudgedSince('e', since)).toBe(true);
    // Generations rotated within this one moment: nothing before it is denied.
    expect(log.nudgedSince('z', since)).toBe(true);
    c.advance(1);
    expect(log.nudgedSince('z', c.now())).toBe(false);
  });
});
