/**
 * Group commit. Callers `add()` one item and get a promise for its result; items
 * that arrive while `maxConcurrent` flushes are in flight wait and go together in
 * the next flush (up to `maxBatchSize`). Under no load an item is flushed at once,
 * alone; under load, batches grow by themselves, so there is no timer to tune.
 *
 * Why: PostgreSQL commits ~3,000 one-row transactions/s per connection but
 * 50,000+ rows/s in 100-row transactions (see ANCHORS.md), and NOTIFY serialises
 * commits, so one transaction (and one NOTIFY) per batch is where throughput is.
 */
export interface Batcher<I, R> {
  add(item: I): Promise<R>;
  /** Resolves when everything added so far has been flushed. */
  drain(): Promise<void>;
}

export type FlushFn<I, R> = (items: I[]) => Promise<R[]>;

export function makeBatcher<I, R>(flush: FlushFn<I, R>, options: { maxBatchSize: number; maxConcurrent: number }): Batcher<I, R> {
  interface Pending {
    item: I;
    resolve: (r: R) => void;
    reject: (e: unknown) => void;
  }
  let waiting: Pending[] = [];
  let inFlight = 0;
  const idleWaiters: (() => void)[] = [];

  function pump(): void {
    while (inFlight < options.maxConcurrent && waiting.length > 0) {
      const batch = waiting.slice(0, options.maxBatchSize);
      waiting = waiting.slice(batch.length);
      inFlight++;
      flush(batch.map((p) => p.item))
        .then(
          (results) => batch.forEach((p, i) => p.resolve(results[i]!)),
          (err) => batch.forEach((p) => p.reject(err)),
        )
        .finally(() => {
          inFlight--;
          pump();
          if (inFlight === 0 && waiting.length === 0) idleWaiters.splice(0).forEach((r) => r());
        });
    }
  }

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => {
        waiting.push({ item, resolve, reject });
        // Let the rest of this tick's callers join before the first flush starts.
        if (waiting.length === 1) queueMicrotask(pump);
      });
    },
    drain() {
      if (inFlight === 0 && waiting.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}
