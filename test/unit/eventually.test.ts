/** The wait helper every test uses must fail loudly: a timeout throws with what it last saw. */
import { describe, expect, it } from 'vitest';
import { eventually, EventuallyTimeout } from '../helpers/eventually.js';

describe('eventually', () => {
  it('returns the first value that satisfies the condition', async () => {
    let n = 0;
    expect(await eventually(() => ++n, (v) => v >= 3, 1_000, 1)).toBe(3);
  });

  it('throws on the deadline with the last value it saw', async () => {
    let n = 0;
    const err = await eventually(() => ({ n: ++n }), () => false, 50, 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventuallyTimeout);
    expect((err as EventuallyTimeout).lastValue).toEqual({ n });
    expect((err as Error).message).toMatch(/within 50 ms; last value: \{"n":\d+\}/);
  });

  it('lets an exception from the probe through', async () => {
    await expect(eventually(() => Promise.reject(new Error('probe broke')), () => true, 50)).rejects.toThrow('probe broke');
  });
});
