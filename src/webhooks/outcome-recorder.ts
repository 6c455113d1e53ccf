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
  /** After each statement that recorded outcomes, with how many. */
  onRecorded?(count: number): void;
}

export function makeOutcomeRecorder(options: OutcomeRecorderOptions): OutcomeRecorder {
  const { pool, instanceId, webhookId } = options;
  const max = options.max ?? UNRECORDED_MAX;
  let pending: DeliveredOutcome[] = [];
  let inFlight: Promise<void> | undefined;
  let inFlightCount = 0;
  let lost = false;
  let failure: { error: unknown } | undefined;

  function recordNext(): void {
    if (inFlight || pending.length === 0 || lost || failure) return;
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
      // Anything unrecorded is in a statement in flight or waits for it (recordNext starts one whenever none is).
      while (holding() && pending.length + inFlightCount >= max) await inFlight;
      return holding();
    },
    async settle() {
      while (holding() && inFlight) await inFlight;
      return holding();
    },
  };
}
