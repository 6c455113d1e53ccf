/** The token bucket of API key rate limits, with the clock passed in (no timers involved). */
import { describe, expect, it } from 'vitest';
import { makeRateLimiter } from '../../src/http/rate-limit.js';

describe('makeRateLimiter', () => {
  it('allows the burst, then answers the seconds until one request fits, and refills at the rate', () => {
    let now = 0;
    const limiter = makeRateLimiter({ liveInstances: () => 1, now: () => now });
    const limit = { perSecond: 2, burst: 3 };
    expect([1, 2, 3].map(() => limiter.take('k', limit))).toEqual([0, 0, 0]);
    expect(limiter.take('k', limit)).toBeCloseTo(0.5);
    now += 250;
    expect(limiter.take('k', limit)).toBeCloseTo(0.25);
    now += 250;
    expect(limiter.take('k', limit)).toBe(0);
    // Never more than the burst, however long it was idle.
    now += 60_000;
    expect([1, 2, 3, 4].map(() => limiter.take('k', limit) === 0)).toEqual([true, true, true, false]);
  });

  it('keeps one bucket per key', () => {
    const limiter = makeRateLimiter({ liveInstances: () => 1, now: () => 0 });
    const limit = { perSecond: 1, burst: 1 };
    expect(limiter.take('a', limit)).toBe(0);
    expect(limiter.take('a', limit)).toBeGreaterThan(0);
    expect(limiter.take('b', limit)).toBe(0);
  });

  it('enforces the share of this instance: rate and burst divided by the live instances', () => {
    let instances = 4;
    let now = 0;
    const limiter = makeRateLimiter({ liveInstances: () => instances, now: () => now });
    const limit = { perSecond: 4, burst: 8 };
    expect([1, 2, 3].map(() => limiter.take('k', limit) === 0)).toEqual([true, true, false]);
    // 1 request/s here: one second later one more.
    now += 1_000;
    expect(limiter.take('k', limit)).toBe(0);
    expect(limiter.take('k', limit)).toBeCloseTo(1);
    // Alone again: the whole rate (and burst) is this instance's.
    instances = 1;
    now += 1_000;
    expect([1, 2, 3, 4].map(() => limiter.take('k', limit) === 0)).toEqual([true, true, true, true]);
  });

  it('gives a bucket at least one request when the burst is smaller than the instances', () => {
    const limiter = makeRateLimiter({ liveInstances: () => 10, now: () => 0 });
    expect(limiter.take('k', { perSecond: 1, burst: 2 })).toBe(0);
    expect(limiter.take('k', { perSecond: 1, burst: 2 })).toBeCloseTo(10);
  });
});
