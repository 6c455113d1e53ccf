/**
 * Runs a stream's events concurrently without giving up order where it matters.
 *
 * Each event brings tasks (one per matched rule), each with keys of two kinds:
 * - `keys` (a stateful rule's state row): tasks sharing one run one after the other,
 *   in seq order (a `changed` rule sees values in event order);
 * - `orderedKeys` (the target device): tasks sharing one start in seq order, each once
 *   the one before has handed its actuation to the submitter (`handedOn`). The
 *   submitter commits one device's actuations in the order they were submitted, so
 *   one device's events share transactions instead of waiting for each commit.
 * Tasks with disjoint keys run side by side, so the submitter can group their commits.
 *
 * The position (`completedSeq`) only moves over a gap-free prefix of finished
 * events. After a failure, tasks behind the failed one on a shared key do not run,
 * and the submitter rejects those already handed on behind a failed commit (see
 * makeBatcher), so a replay from `completedSeq + 1` finds every key where it stopped.
 * A pipeline that failed is discarded; the client reconnects with a new one. (A task
 * whose actuation cannot be stored or is refused for good does not fail: it reports the
 * skip and resolves, so one bad event never holds the position; see rule-engine.ts.)
 */
export interface EventTask {
  keys: readonly string[];
  orderedKeys?: readonly string[];
  /** Calls `handedOn` once its actuation is submitted, or it decided to submit none (else: when it settles). */
  run(handedOn: () => void): Promise<void>;
}

export interface EventPipeline {
  /** Starts an event's tasks; resolves when there is room for the next event. Call in seq order. */
  push(seq: number, tasks: EventTask[]): Promise<void>;
  /** Last seq at or below which every pushed event finished (`initialSeq` until then). */
  readonly completedSeq: number | null;
  readonly failure: Error | undefined;
  /** Resolves when no task is running or waiting. */
  idle(): Promise<void>;
}

export function makeEventPipeline(options: {
  initialSeq: number | null;
  maxInFlight: number;
  onAdvance(seq: number): void;
  onError(err: Error, seq: number): void;
}): EventPipeline {
  const order: { seq: number; done: boolean }[] = [];
  const tails = new Map<string, Promise<void>>();
  let completedSeq = options.initialSeq;
  let failure: Error | undefined;
  let inFlight = 0;
  let roomWaiter: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];

  const handoffs = new Map<string, Promise<void>>();

  function runTask(task: EventTask): Promise<void> {
    const orderedKeys = task.orderedKeys ?? [];
    const before = [...task.keys.flatMap((k) => tails.get(k) ?? []), ...orderedKeys.flatMap((k) => handoffs.get(k) ?? [])];
    let handedOn!: () => void;
    const handoff = new Promise<void>((resolve) => (handedOn = resolve));
    const run = (before.length > 0 ? Promise.all(before) : Promise.resolve())
      .then(() => {
        if (failure) throw failure;
        return task.run(handedOn);
      })
      .catch((err: unknown) => {
        // Set before anything chained on this task's keys looks at it.
        failure ??= err instanceof Error ? err : new Error(String(err));
        throw err;
      });
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    void settled.then(handedOn);
    for (const key of task.keys) tails.set(key, settled);
    for (const key of orderedKeys) handoffs.set(key, handoff);
    void settled.then(() => {
      for (const key of task.keys) if (tails.get(key) === settled) tails.delete(key);
      for (const key of orderedKeys) if (handoffs.get(key) === handoff) handoffs.delete(key);
    });
    return run;
  }

  return {
    get completedSeq() {
      return completedSeq;
    },
    get failure() {
      return failure;
    },
    push(seq, tasks) {
      const entry = { seq, done: false };
      order.push(entry);
      inFlight++;
      Promise.all(tasks.map(runTask))
        .then(
          () => {
            entry.done = true;
            let advanced = false;
            while (order[0]?.done) {
              completedSeq = order.shift()!.seq;
              advanced = true;
            }
            if (advanced) options.onAdvance(completedSeq!);
          },
          (err: Error) => options.onError(err, seq),
        )
        .finally(() => {
          inFlight--;
          if (inFlight < options.maxInFlight) {
            roomWaiter?.();
            roomWaiter = undefined;
          }
          if (inFlight === 0) {
            for (const resolve of idleWaiters) resolve();
            idleWaiters = [];
          }
        });
      if (inFlight < options.maxInFlight) return Promise.resolve();
      return new Promise((resolve) => (roomWaiter = resolve));
    },
    idle() {
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}
