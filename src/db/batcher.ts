/**
 * Group commit. Callers `add()` one item and get a promise for its result; items
 * that arrive while `maxConcurrent` flushes are in flight wait and go together in
 * the next flush (up to `maxBatchSize`). Under no load an item is flushed at once,
 * alone; under load, batches grow by themselves, so there is no timer to tune.
 *
 * With `keyOf`, items with the same key are flushed in the order they were added:
 * an item waits while an earlier item with its key is in flight (two concurrent
 * transactions could otherwise commit one device's actuations out of order). When an
 * item fails, the items waiting behind it with its key are rejected too (with the
 * same error, or `EarlierItemFailedError` when the failure was the item's own):
 * otherwise they would commit after an earlier item that did not, and a caller
 * replaying in order (the DSS pipeline) would get them out of order.
 *
 * One item must not sink the others (strangers share a transaction):
 * - A flush that fails for a reason that may belong to one item (anything but
 *   `isDatabaseUnavailable`: a data exception, an integrity violation, a bug) is retried
 *   in halves, in order, each half a new flush, until the failing items are alone; only
 *   they fail, each with its own error. One culprit among n costs about 2·log2(n) extra
 *   flushes; every item failing costs 2n − 1. Items of a culprit's key after it in the
 *   batch are rejected with `EarlierItemFailedError`, as above. So `flush` must be all
 *   or nothing (one transaction), and a retry of a subset must be harmless.
 * - Every item has a deadline, `flushTimeoutMs` after it was added, waiting included: an
 *   item still waiting for a slot then (the flushes ahead of it hang) is rejected with
 *   `BatchTimeoutError` without being tried, and so are the items behind it on its key.
 *   A flush's deadline is that of its oldest item (but at least a tenth of
 *   `flushTimeoutMs`, so a flush always gets a chance): when it passes, the flush's items
 *   (and those behind them on their keys) are rejected with `BatchTimeoutError`, its
 *   slot and keys are freed for the next batch, and whatever the flush does later is
 *   ignored (but for `onLateResult`). A flush that commits after its deadline has
 *   committed: its callers were told it timed out although it happened (a submission
 *   answered 503 may exist; the client's remedy is an idempotency key, which returns
 *   the original on a retry).
 *
 * Why: PostgreSQL commits ~3,000 one-row transactions/s per connection but
 * 50,000+ rows/s in 100-row transactions (see ANCHORS.md), and NOTIFY serialises
 * commits, so one transaction (and one NOTIFY) per batch is where throughput is.
 */
import { isDatabaseUnavailable } from './errors.js';

export interface Batcher<I, R> {
  add(item: I): Promise<R>;
  /** Resolves when everything added so far has been flushed (or failed, or timed out). */
  drain(): Promise<void>;
}

export type FlushFn<I, R> = (items: I[]) => Promise<R[]>;

export interface BatcherOptions<I, R = unknown> {
  maxBatchSize: number;
  maxConcurrent: number;
  keyOf?: (item: I) => string;
  /** Deadline of each flush, in ms (callers pass `DATABASE_TIMEOUT_MS`). (Default: 5 000) */
  flushTimeoutMs?: number;
  /** Told when a flush whose items were failed at its deadline succeeds after all (to undo what nobody will use). */
  onLateResult?: (items: I[], results: R[]) => void;
  /**
   * A flush starts no sooner than this many ms after the previous one started: under load,
   * items that arrive meanwhile wait and go together (fewer, larger statements and commits);
   * an item arriving after a quiet spell is still flushed at once. (Default: 0, no gap)
   */
  minFlushIntervalMs?: number;
}

/** Default flush deadline; the same as `DATABASE_TIMEOUT_MS`'s default. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 5_000;

/** A flush did not settle within its deadline. The database may still commit it. HTTP: 503 `DATABASE_UNAVAILABLE`. */
export class BatchTimeoutError extends Error {
  readonly code = 'DATABASE_TIMEOUT';
  constructor(
    readonly timeoutMs: number,
    /** True when the item never reached the database (it waited for a slot all along): it was certainly not committed. */
    readonly untried = false,
  ) {
    super(
      untried
        ? `database: no batch slot within ${timeoutMs} ms (DATABASE_TIMEOUT_MS): the flushes ahead did not settle; not tried`
        : `database: batch flush did not settle within ${timeoutMs} ms (DATABASE_TIMEOUT_MS); it may still commit`,
    );
    this.name = 'BatchTimeoutError';
  }
}

/**
 * An earlier item with the same key failed for a reason of its own, so this one was not
 * tried (it would have committed ahead of that item's retry). Not this item's fault:
 * retrying it is right. HTTP: 503 `DATABASE_UNAVAILABLE`.
 */
export class EarlierItemFailedError extends Error {
  readonly code = 'EARLIER_ITEM_FAILED';
  constructor(cause: unknown) {
    super('an earlier item with the same key failed; this one was not tried', { cause });
    this.name = 'EarlierItemFailedError';
  }
}

export function makeBatcher<I, R>(flush: FlushFn<I, R>, options: BatcherOptions<I, R>): Batcher<I, R> {
  interface Pending {
    item: I;
    key: string | undefined;
    /** When the item's time is up (`Date.now()` at add + `flushTimeoutMs`). */
    deadline: number;
    resolve: (r: R) => void;
    reject: (e: unknown) => void;
  }
  const timeoutMs = options.flushTimeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS;
  let waiting: Pending[] = [];
  let inFlight = 0;
  const keysInFlight = new Set<string>();
  const idleWaiters: (() => void)[] = [];
  let pumpScheduled = false;
  const minIntervalMs = options.minFlushIntervalMs ?? 0;
  /** When (`performance.now()`) the last flush started, and the timer that starts the next once the gap has passed. */
  let lastFlushAt = -Infinity;
  let gapTimer: NodeJS.Timeout | undefined;
  /** One timer for all waiting items, set for the oldest (`waiting` is in add order). */
  let expiryTimer: NodeJS.Timeout | undefined;

  function scheduleExpiry(): void {
    if (expiryTimer !== undefined || waiting.length === 0) return;
    expiryTimer = setTimeout(expireWaiting, Math.max(0, waiting[0]!.deadline - Date.now()));
    expiryTimer.unref();
  }

  /** Rejects waiting items whose time is up, and the items behind them on their keys. */
  function expireWaiting(): void {
    expiryTimer = undefined;
    const now = Date.now();
    const expiredKeys = new Set<string>();
    const kept: Pending[] = [];
    for (const p of waiting) {
      if (p.deadline <= now || (p.key !== undefined && expiredKeys.has(p.key))) {
        if (p.key !== undefined) expiredKeys.add(p.key);
        p.reject(new BatchTimeoutError(timeoutMs, true));
      } else kept.push(p);
    }
    waiting = kept;
    scheduleExpiry();
    if (inFlight === 0 && waiting.length === 0) idleWaiters.splice(0).forEach((r) => r());
  }

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

  /** How long a flush of `batch` may take: until its oldest item's deadline, but at least a tenth of the bound. */
  function flushDeadlineMs(batch: Pending[]): number {
    const oldest = Math.min(...batch.map((p) => p.deadline));
    return Math.max(timeoutMs / 10, oldest - Date.now());
  }

  /** One flush, bounded by the deadline; a late success goes to `onLateResult`, a late failure nowhere. */
  function flushBounded(items: I[], deadlineMs: number): Promise<R[]> {
    let timer: NodeJS.Timeout | undefined;
    const flushed = flush(items);
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BatchTimeoutError(timeoutMs)), deadlineMs);
    });
    let late = false;
    return Promise.race([flushed, deadline])
      .catch((err: unknown) => {
        late = err instanceof BatchTimeoutError;
        throw err;
      })
      .finally(() => {
        clearTimeout(timer);
        // A flush that settles after its deadline must not become an unhandled rejection.
        flushed.then((results) => late && options.onLateResult?.(items, results), () => undefined);
      });
  }

  /** What one batch's flushes learnt: keys whose item failed (with why), and whether the database is out. */
  interface Outcome {
    failedKeys: Map<string, unknown>;
    unavailable?: unknown;
  }

  /**
   * Flushes `batch`, splitting it on failures that may belong to one item, in order (so a
   * key's items still commit in the order they were added). Resolves once every item is
   * settled. Once the database is out (an availability error or a timeout), the rest of
   * the batch fails at once with that error instead of waiting out one deadline per half.
   */
  async function settle(batch: Pending[], outcome: Outcome): Promise<void> {
    const live: Pending[] = [];
    for (const p of batch) {
      const cause = p.key === undefined ? undefined : outcome.failedKeys.get(p.key);
      if (outcome.unavailable !== undefined) fail(p, outcome.unavailable, outcome);
      else if (cause !== undefined) p.reject(behindError(cause));
      else live.push(p);
    }
    if (live.length === 0) return;
    let results: R[];
    try {
      results = await flushBounded(
        live.map((p) => p.item),
        flushDeadlineMs(live),
      );
    } catch (err) {
      if (isDatabaseUnavailable(err)) outcome.unavailable = err;
      else if (live.length > 1) {
        const half = Math.ceil(live.length / 2);
        await settle(live.slice(0, half), outcome);
        await settle(live.slice(half), outcome);
        return;
      }
      for (const p of live) fail(p, err, outcome);
      return;
    }
    live.forEach((p, i) => p.resolve(results[i]!));
  }

  function fail(p: Pending, err: unknown, outcome: Outcome): void {
    p.reject(err);
    if (p.key !== undefined && !outcome.failedKeys.has(p.key)) outcome.failedKeys.set(p.key, err);
  }

  /** The error for an item not tried because an earlier one of its key failed with `cause`. */
  function behindError(cause: unknown): unknown {
    return isDatabaseUnavailable(cause) ? cause : new EarlierItemFailedError(cause);
  }

  function pump(): void {
    // A slot can free in the same instant the oldest items' time runs out, with the expiry
    // timer not yet run: those items are failed untried here, not flushed past their deadline.
    if (waiting.length > 0 && waiting[0]!.deadline <= Date.now()) {
      clearTimeout(expiryTimer);
      expireWaiting();
    }
    while (inFlight < options.maxConcurrent && waiting.length > 0) {
      const wait = lastFlushAt + minIntervalMs - performance.now();
      if (wait > 0) {
        gapTimer ??= setTimeout(() => {
          gapTimer = undefined;
          pump();
        }, wait);
        return;
      }
      const batch = takeBatch();
      if (batch.length === 0) return;
      const keys = options.keyOf ? new Set(batch.map((p) => p.key!)) : undefined;
      keys?.forEach((k) => keysInFlight.add(k));
      inFlight++;
      lastFlushAt = performance.now();
      const outcome: Outcome = { failedKeys: new Map() };
      void settle(batch, outcome).finally(() => {
        const failed = outcome.failedKeys;
        if (failed.size > 0) {
          // Behind a failed item on its key: not tried (see the module comment).
          const behind = waiting.filter((p) => failed.has(p.key!));
          waiting = waiting.filter((p) => !failed.has(p.key!));
          for (const p of behind) p.reject(behindError(failed.get(p.key!)));
        }
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
        waiting.push({ item, key: options.keyOf?.(item), deadline: Date.now() + timeoutMs, resolve, reject });
        scheduleExpiry();
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
