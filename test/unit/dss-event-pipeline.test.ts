import { describe, expect, it } from 'vitest';
import { makeEventPipeline } from '../../src/dss/event-pipeline.js';

function gate() {
  let open!: () => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('event pipeline', () => {
  it('runs tasks on one key in seq order and on other keys side by side; the position moves over a gap-free prefix', async () => {
    const advanced: number[] = [];
    const p = makeEventPipeline({ initialSeq: 10, maxInFlight: 100, onAdvance: (s) => advanced.push(s), onError: () => undefined });
    const started: string[] = [];
    const gates = { a11: gate(), a12: gate(), b13: gate() };
    const task = (name: keyof typeof gates, key: string) => ({ keys: [key], run: () => (started.push(name), gates[name].promise) });
    await p.push(11, [task('a11', 'device:a')]);
    await p.push(12, [task('a12', 'device:a')]);
    await p.push(13, [task('b13', 'device:b')]);
    await p.push(14, []);
    await tick();
    expect(started).toEqual(['a11', 'b13']);
    gates.b13.open();
    await tick();
    expect(p.completedSeq).toBe(10);
    gates.a11.open();
    await tick();
    expect(started).toEqual(['a11', 'b13', 'a12']);
    expect(p.completedSeq).toBe(11);
    gates.a12.open();
    await p.idle();
    expect(p.completedSeq).toBe(14);
    expect(advanced).toEqual([11, 14]);
  });

  it('after a failure, tasks behind it on the same key never run and the position stops before it', async () => {
    const errors: number[] = [];
    const p = makeEventPipeline({ initialSeq: null, maxInFlight: 100, onAdvance: () => undefined, onError: (_e, seq) => errors.push(seq) });
    const ran: number[] = [];
    const g1 = gate();
    await p.push(1, [{ keys: ['k'], run: async () => void ran.push(1) }]);
    await p.push(2, [{ keys: ['k'], run: () => (ran.push(2), g1.promise) }]);
    await p.push(3, [{ keys: ['k'], run: async () => void ran.push(3) }]);
    g1.fail(new Error('database down'));
    await p.idle();
    expect(ran).toEqual([1, 2]);
    expect(p.completedSeq).toBe(1);
    expect(p.failure?.message).toBe('database down');
    expect(errors).toEqual([2, 3]);
  });

  it('push waits for room when maxInFlight events are running', async () => {
    const p = makeEventPipeline({ initialSeq: 0, maxInFlight: 2, onAdvance: () => undefined, onError: () => undefined });
    const g = gate();
    await p.push(1, [{ keys: ['x'], run: () => g.promise }]);
    let third = false;
    const second = p.push(2, [{ keys: ['y'], run: () => g.promise }]).then(() => (third = true));
    await tick();
    expect(third).toBe(false);
    g.open();
    await second;
    expect(third).toBe(true);
    await p.idle();
    expect(p.completedSeq).toBe(2);
  });

  it('starts tasks on one ordered key in seq order, each once the one before has handed on, not finished', async () => {
    const p = makeEventPipeline({ initialSeq: 0, maxInFlight: 100, onAdvance: () => undefined, onError: () => undefined });
    const started: number[] = [];
    const handOns = [gate(), gate(), gate()];
    const finishes = [gate(), gate(), gate()];
    const task = (i: number) => ({
      keys: [],
      orderedKeys: ['device:a'],
      async run(handedOn: () => void) {
        started.push(i);
        await handOns[i]!.promise;
        handedOn();
        await finishes[i]!.promise;
      },
    });
    for (let i = 0; i < 3; i++) await p.push(i + 1, [task(i)]);
    await tick();
    expect(started).toEqual([0]);
    handOns[0]!.open();
    await tick();
    expect(started).toEqual([0, 1]); // task 0 has not finished: it handed on
    handOns[1]!.open();
    handOns[2]!.open();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    expect(p.completedSeq).toBe(0);
    for (const f of finishes) f.open();
    await p.idle();
    expect(p.completedSeq).toBe(3);
  });

  it('after a failure, tasks not yet started on an ordered key never run', async () => {
    const p = makeEventPipeline({ initialSeq: 0, maxInFlight: 100, onAdvance: () => undefined, onError: () => undefined });
    const ran: number[] = [];
    const g = gate();
    // Task 1 fails before handing on: task 2 (same device) must not start.
    await p.push(1, [{ keys: [], orderedKeys: ['device:a'], run: () => (ran.push(1), g.promise) }]);
    await p.push(2, [{ keys: [], orderedKeys: ['device:a'], run: async () => void ran.push(2) }]);
    g.fail(new Error('database down'));
    await p.idle();
    expect(ran).toEqual([1]);
    expect(p.completedSeq).toBe(0);
  });
});
