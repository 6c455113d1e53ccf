import { describe, expect, it } from 'vitest';
import { makeBatcher } from '../../src/db/batcher.js';
import { eventually } from '../helpers/eventually.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('makeBatcher', () => {
  it('flushes a lone item at once and groups items that arrive while a flush is in flight', async () => {
    const batches: number[][] = [];
    const batcher = makeBatcher<number, number>(
      async (items) => {
        batches.push(items);
        await tick();
        return items.map((i) => i * 2);
      },
      { maxBatchSize: 100, maxConcurrent: 1 },
    );
    const first = batcher.add(1);
    await Promise.resolve();
    await new Promise((r) => setImmediate(r));
    const rest = [2, 3, 4].map((i) => batcher.add(i));
    expect(await Promise.all([first, ...rest])).toEqual([2, 4, 6, 8]);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('never has two flushes with the same key in flight, and keeps each key in order', async () => {
    const log: string[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const flushing = new Set<string>();
    const batcher = makeBatcher<{ key: string; n: number }, string>(
      async (items) => {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        const keys = new Set(items.map((i) => i.key));
        for (const key of keys) {
          expect(flushing.has(key), `key ${key} already in flight`).toBe(false);
          flushing.add(key);
        }
        await tick();
        for (const i of items) log.push(`${i.key}${i.n}`);
        for (const key of keys) flushing.delete(key);
        concurrent--;
        return items.map((i) => `${i.key}${i.n}`);
      },
      { maxBatchSize: 2, maxConcurrent: 4, keyOf: (i) => i.key },
    );
    const adds = [];
    for (let n = 0; n < 6; n++) for (const key of ['a', 'b', 'c']) adds.push(batcher.add({ key, n }));
    await Promise.all(adds);
    for (const key of ['a', 'b', 'c']) {
      expect(log.filter((l) => l.startsWith(key))).toEqual([0, 1, 2, 3, 4, 5].map((n) => `${key}${n}`));
    }
    expect(maxConcurrent).toBeGreaterThan(1);
  });

  it('rejects every item of a failed flush and goes on with the next', async () => {
    let calls = 0;
    const batcher = makeBatcher<number, number>(
      async (items) => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return items;
      },
      { maxBatchSize: 10, maxConcurrent: 1 },
    );
    await expect(batcher.add(1)).rejects.toThrow('boom');
    expect(await batcher.add(2)).toBe(2);
    await batcher.drain();
  });

  it('rejects the items waiting behind a failed flush on its keys, and no others', async () => {
    const flushed: string[][] = [];
    let release!: () => void;
    const batcher = makeBatcher<{ key: string; n: number }, string>(
      async (items) => {
        flushed.push(items.map((i) => `${i.key}${i.n}`));
        if (items.some((i) => i.key === 'a' && i.n === 0)) {
          await new Promise<void>((r) => (release = r));
          throw new Error('boom');
        }
        return items.map((i) => `${i.key}${i.n}`);
      },
      { maxBatchSize: 10, maxConcurrent: 2, keyOf: (i) => i.key },
    );
    const a0 = batcher.add({ key: 'a', n: 0 });
    await eventually(() => flushed.length, (n) => n === 1);
    // While a0 is in flight: a1, a2 wait behind it; b0 flushes on its own.
    const a1 = batcher.add({ key: 'a', n: 1 });
    const a2 = batcher.add({ key: 'a', n: 2 });
    const b0 = batcher.add({ key: 'b', n: 0 });
    await eventually(() => flushed.flat(), (f) => f.includes('b0'));
    release();
    await expect(a0).rejects.toThrow('boom');
    await expect(a1).rejects.toThrow('boom');
    await expect(a2).rejects.toThrow('boom');
    expect(await b0).toBe('b0');
    // Later items of the key go through.
    expect(await batcher.add({ key: 'a', n: 3 })).toBe('a3');
    expect(flushed.flat()).not.toContain('a1');
    expect(flushed.flat()).not.toContain('a2');
  });
});
