/**
 * Records one held endpoint's 2xx outcomes off its send path: the sender hands each one
 * over and sends the next event at once, while one record statement at a time
 * (`recordDeliveries`) writes every outcome handed over since the previous statement
 * and moves the cursor to the highest of them.
 *
 * What that costs the at-least-once promise is bounded: at most `max` outcomes are
 * delivered but not yet recorded (pending plus in the statement in flight); at that
 * bound `room()` waits for the statement in flight, itself bounded by the database
 * timeout. An instance killed then sends again, through the next holder, those events
 * and the one in flight: at most `max` duplicates.
 *
 * With `gatherMs`, a statement does not leave with the first outcome: it waits until
 * `gatherMs` after that one was handed over, or until half of `max` are pending, so that an
 * endpoint that is caught up (an event every few ms) records a batch per statement, not
 * each event in its own. `room()` and `settle()` never wait for that: they send what is
 * pending at once.
 *
 * Once a statement finds the lease lost (or the endpoint disabled), nothing more is
 * recorded and `room()` and `settle()` say so; a statement that fails (the database)
 * makes them throw its error. The sender stops sending in both cases.
 */
import type { Pool } from '../db/pool.js';
import { recordDeliveries, type DeliveredOutcome } from './delivery-sql.js';

/** Delivered-but-unrecorded events of one endpoint at most: the sender waits for the recorder there. */
export const UNRECORDED_MAX = 32;

export interface OutcomeRecorder {
  /** A 2xx answer: recorded by the next statement. */
  delivered(outcome: DeliveredOutcome): void;
  /** Resolves once fewer than `max` outcomes are unrecorded: true, or false when the lease is lost. */
  room(): Promise<boolean>;
  /** Resolves once every outcome handed over is recorded: true, or false when the lease is lost. */
  settle(): Promise<boolean>;
}

export interface OutcomeRecorderOptions {
  pool: Pool;
  instanceId: string;
  webhookId: string;
  max?: number;
  /** How long the first pending outcome waits for others before its statement leaves (Default: 0, at once). */
  gatherMs?: number;
  /** After each statement that recorded outcomes, with how many. */
  onRecorded?(count: number): void;
}

export function makeOutcomeRecorder(options: OutcomeRecorderOptions): OutcomeRecorder {
  const { pool, instanceId, webhookId } = options;
  const max = options.max ?? UNRECORDED_MAX;
  const gatherMs = options.gatherMs ?? 0;
  // Half of max: the sender does not wait in room() while a gathered batch fills up.
  const gatherCount = Math.max(1, Math.floor(max / 2));
  let pending: DeliveredOutcome[] = [];
  let gathering: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let inFlightCount = 0;
  let lost = false;
  let failure: { error: unknown } | undefined;

  /** Starts a statement with what is pending, unless one is in flight; `now`: not waiting to gather more. */
  function recordNext(now = false): void {
    if (inFlight || pending.length === 0 || lost || failure) return;
    if (!now && gatherMs > 0 && pending.length < gatherCount) {
      gathering ??= setTimeout(() => {
        gathering = undefined;
        recordNext(true);
      }, gatherMs);
      return;
    }
    clearTimeout(gathering);
    gathering = undefined;
    const batch = pending;
    pending = [];
    inFlightCount = batch.length;
    inFlight = recordDeliveries(pool, instanceId, webhookId, batch)
      .then(
        (held) => {
          if (held) options.onRecorded?.(batch.length);
          else lost = true;
        },
        (error: unknown) => {
          failure = { error };
        },
      )
      .finally(() => {
        inFlight = undefined;
        inFlightCount = 0;
        // What arrived meanwhile waited at least a statement's time: gathered again from here.
        recordNext();
      });
  }

  /** Whether recording goes on; throws a failed statement's error. */
  function holding(): boolean {
    if (failure) throw failure.error;
    return !lost;
  }

  return {
    delivered(outcome) {
      pending.push(outcome);
      recordNext();
    },
    async room() {
      // Anything unrecorded is in a statement in flight or waits for it (or for the gathering: cut short here).
      while (holding() && pending.length + inFlightCount >= max) {
        recordNext(true);
        await inFlight;
      }
      return holding();
    },
    async settle() {
      while (holding() && (inFlight || pending.length > 0)) {
        recordNext(true);
        await inFlight;
      }
      return holding();
    },
  };
}
