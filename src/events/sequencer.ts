/**
 * The sequencer: numbers committed event rows (migration 0019's `sequence_events`: one
 * batch row per pass, the events themselves are not rewritten). Every instance runs this loop; each pass takes a transaction-scoped
 * advisory lock, so one pass at a time runs deployment-wide and ids are handed out in
 * one order, and an instance that dies mid-pass leaves nothing half-done (its
 * transaction rolls back, the rows stay unnumbered for the next pass).
 *
 * Paced by polling, not by a NOTIFY from the writers: a NOTIFY in every transaction
 * that makes a transition would serialise their commits (PostgreSQL takes one global
 * lock to queue notifications at commit). A pass with nothing new is one index probe.
 * A full pass (`batchSize` events) is followed by the next at once, so a backlog drains
 * at the database's pace. A pass that fails (e.g. past `DATABASE_TIMEOUT_MS` on an
 * overloaded database) is retried with half the batch, down to `MIN_BATCH`, and the
 * batch grows back with each full pass: a backlog too big to move in one statement
 * in time would otherwise fail the same way forever.
 */
import type { Logger } from '../logger.js';
import type { Pool } from '../db/pool.js';
import { sequenceEvents, type SequencingPass } from './events-sql.js';

export interface EventSequencerOptions {
  pool: Pool;
  logger: Logger;
  /** Pause between passes that found less than a full batch (`EVENTS_SEQUENCER_INTERVAL_MS`). */
  intervalMs: number;
  /** Events moved per pass (one transaction), at most. */
  batchSize: number;
  onPass?(pass: SequencingPass): void;
}

export interface EventSequencer {
  stop(): Promise<void>;
}

const MAX_ERROR_BACKOFF_MS = 5_000;
const MIN_BATCH = 50;

export function startEventSequencer(options: EventSequencerOptions): EventSequencer {
  const { pool, intervalMs, batchSize } = options;
  const log = options.logger.child({ component: 'events' });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let failures = 0;
  let batch = batchSize;

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = pass().finally(() => (running = undefined));
    }, delayMs);
  }

  async function pass(): Promise<void> {
    try {
      const result = await sequenceEvents(pool, batch);
      if (failures > 0) log.info({ failures, batch }, 'events: sequencer recovered');
      failures = 0;
      options.onPass?.(result);
      const full = result.locked && result.sequenced >= batch;
      if (full) batch = Math.min(batchSize, batch * 2);
      schedule(full ? 0 : intervalMs);
    } catch (err) {
      // The rows stay unnumbered; the next pass takes them. One line per failure streak.
      if (failures === 0) log.warn({ err }, 'events: sequencing pass failed; retrying with backoff');
      failures++;
      batch = Math.max(MIN_BATCH, Math.floor(batch / 2));
      schedule(Math.min(MAX_ERROR_BACKOFF_MS, intervalMs * 2 ** failures));
    }
  }

  schedule(0);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
