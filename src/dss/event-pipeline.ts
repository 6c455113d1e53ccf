/**
 * Runs a stream's events concurrently without giving up order where it matters.
 *
 * Each event brings tasks (one per matched rule), each with keys: the target
 * device, and for stateful rules the rule's state row. Tasks sharing a key run in
 * seq order, one after the other (a device gets its actuations in event order; a
 * `changed` rule sees values in event order); tasks with disjoint keys run side by
 * side, so the submitter can group their commits.
 *
 * The position (`completedSeq`) only moves over a gap-free prefix of finished
 * events. After a failure, tasks queued behind the failed one on a shared key do
 * not run, so a replay from `completedSeq + 1` finds every key where it stopped.
 * A pipeline that failed is discarded; the client reconnects with a new one.
 */
export interface EventTask {
  keys: readonly string[];
  run(): Promise<void>;
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

  function runTask(task: EventTask): Promise<void> {
    const before = task.keys.flatMap((k) => tails.get(k) ?? []);
    const run = (before.length > 0 ? Promise.all(before) : Promise.resolve())
      .then(() => {
        if (failure) throw failure;
        return task.run();
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
    for (const key of task.keys) tails.set(key, settled);
    void settled.then(() => {
      for (const key of task.keys) if (tails.get(key) === settled) tails.delete(key);
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
