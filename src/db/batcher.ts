/**
 * Group commit. Callers `add()` one item and get a promise for its result; items
 * that arrive while `maxConcurrent` flushes are in flight wait and go together in
 * the next flush (up to `maxBatchSize`). Under no load an item is flushed at once,
 * alone; under load, batches grow by themselves, so there is no timer to tune.
 *
 * With `keyOf`, items with the same key are flushed in the order they were added:
 * an item waits while an earlier item with its key is in flight (two concurrent
 * transactions could otherwise commit one device's actuations out of order). When a
 * flush fails, the items waiting behind it with one of its keys are rejected too
 * (with the same error): otherwise they would commit after an earlier item that did
 * not, and a caller replaying in order (the DSS pipeline) would get them out of order.
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

export interface BatcherOptions<I> {
  maxBatchSize: number;
  maxConcurrent: number;
  keyOf?: (item: I) => string;
}

export function makeBatcher<I, R>(flush: FlushFn<I, R>, options: BatcherOptions<I>): Batcher<I, R> {
  interface Pending {
    item: I;
    key: string | undefined;
    resolve: (r: R) => void;
    reject: (e: unknown) => void;
  }
  let waiting: Pending[] = [];
  let inFlight = 0;
  const keysInFlight = new Set<string>();
  const idleWaiters: (() => void)[] = [];
  let pumpScheduled = false;

  /** The next batch: waiting items in order, skipping keys in flight (and later items of a skipped key). */
  function takeBatch(): Pending[] {
    if (!options.keyOf) {
      const batch = waiting.slice(0, options.maxBatchSize);
      waiting = waiting.slice(batch.length);
      return batch;
    }
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of waiting) {
      if (batch.length < options.maxBatchSize && !keysInFlight.has(p.key!)) batch.push(p);
      else rest.push(p);
    }
    waiting = rest;
    return batch;
  }

  function pump(): void {
    while (inFlight < options.maxConcurrent && waiting.length > 0) {
      const batch = takeBatch();
      if (batch.length === 0) return;
      const keys = options.keyOf ? new Set(batch.map((p) => p.key!)) : undefined;
      keys?.forEach((k) => keysInFlight.add(k));
      inFlight++;
      flush(batch.map((p) => p.item))
        .then(
          (results) => batch.forEach((p, i) => p.resolve(results[i]!)),
          (err) => {
            batch.forEach((p) => p.reject(err));
            if (keys) {
              const behind = waiting.filter((p) => keys.has(p.key!));
              waiting = waiting.filter((p) => !keys.has(p.key!));
              behind.forEach((p) => p.reject(err));
            }
          },
        )
        .finally(() => {
          inFlight--;
          keys?.forEach((k) => keysInFlight.delete(k));
          pump();
          if (inFlight === 0 && waiting.length === 0) idleWaiters.splice(0).forEach((r) => r());
        });
    }
  }

  return {
    add(item) {
      return new Promise<R>((resolve, reject) => {
        waiting.push({ item, key: options.keyOf?.(item), resolve, reject });
        // Let the rest of this tick's callers join before a flush starts.
        if (!pumpScheduled && inFlight < options.maxConcurrent) {
          pumpScheduled = true;
          queueMicrotask(() => {
            pumpScheduled = false;
            pump();
          });
        }
      });
    },
    drain() {
      if (inFlight === 0 && waiting.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}
