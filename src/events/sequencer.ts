/**
 * The sequencer: numbers committed event rows (migration 0019's `sequence_events`: one
 * batch row per pass, the events themselves are not rewritten). Every instance runs this loop; each pass takes a transaction-scoped
 * advisory lock, so one pass at a time runs deployment-wide and ids are handed out in
 * one order, and an instance that dies mid-pass leaves nothing half-done (its
 * transaction rolls back, the rows stay unnumbered for the next pass). With `read`, a pass
 * also returns the events it numbered (migrations 0022, 0027), for this instance's feed.
 *
 * Paced by nudges and a poll. This instance's own transitions nudge it once committed
 * (the lifecycle's events, `nudge()`): a pass then starts at once, but no sooner than
 * `minGapMs` after the previous pass started, so a stream of commits costs at most one
 * pass per gap, not one per commit. Writers do not NOTIFY: a NOTIFY in every transaction
 * that makes a transition would serialise their commits (PostgreSQL takes one global lock
 * to queue notifications at commit). A nudged pass that finds another instance's pass
 * holding the lock tries again after the gap (that pass may have looked before our commit).
 * What no nudge covers (session and DSS stream events; commits of an instance that died
 * before its pass) the poll takes: a pass `intervalMs` after the previous one started
 * (from its start, so a pass's own duration does not stretch the interval). A pass with nothing new is one index probe.
 * A full pass (`batchSize` events) is followed by the next at once, so a backlog drains
 * at the database's pace. A pass that fails (e.g. past `DATABASE_TIMEOUT_MS` on an
 * overloaded database) is retried with half the batch, down to `MIN_BATCH`, and the
 * batch grows back with each full pass: a backlog too big to move in one statement
 * in time would otherwise fail the same way forever. While it fails, nudges wait for the backoff.
 */
import type { Logger } from '../logger.js';
import type { Pool } from '../db/pool.js';
import { sequenceAndReadEvents, type SequencingPass } from './events-sql.js';

export interface EventSequencerOptions {
  pool: Pool;
  logger: Logger;
  /** A pass this long after the previous one started, nudged or not (`EVENTS_SEQUENCER_INTERVAL_MS`). */
  intervalMs: number;
  /** A nudged pass starts no sooner than this after the previous one started (`EVENTS_SEQUENCER_MIN_GAP_MS`). */
  minGapMs: number;
  /** Events moved per pass (one transaction), at most. */
  batchSize: number;
  /** Whether a pass also returns the events it numbers (`pass.events`: this instance's feed has subscribers). */
  read?(): boolean;
  /** After each pass, once its transaction committed. */
  onPass?(pass: SequencingPass): void;
}

export interface EventSequencer {
  /** Something committed that may have written events: a pass soon (see above). */
  nudge(): void;
  stop(): Promise<void>;
}

const MAX_ERROR_BACKOFF_MS = 5_000;
const MIN_BATCH = 50;

export function startEventSequencer(options: EventSequencerOptions): EventSequencer {
  const { pool, intervalMs, minGapMs, batchSize } = options;
  const log = options.logger.child({ component: 'events' });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (performance.now()), Infinity without one. */
  let dueAt = Number.POSITIVE_INFINITY;
  let running: Promise<void> | undefined;
  /** A nudge since the last pass that held the lock started: its commit may be after that pass's snapshot. */
  let nudged = false;
  let lastStart = Number.NEGATIVE_INFINITY;
  let failures = 0;
  let batch = batchSize;

  /** A pass at `at` (performance.now()), unless one is due sooner. Not while a pass runs. */
  function planAt(at: number): void {
    if (stopped || running || dueAt <= at) return;
    clearTimeout(timer);
    dueAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      dueAt = Number.POSITIVE_INFINITY;
      running = pass().then((next) => {
        running = undefined;
        planAt(nudged && failures === 0 ? Math.min(next, lastStart + minGapMs) : next);
      });
    }, Math.max(0, at - performance.now()));
  }

  /** One pass; resolves with when the next one is due. */
  async function pass(): Promise<number> {
    lastStart = performance.now();
    const wasNudged = nudged;
    nudged = false;
    try {
      const result = await sequenceAndReadEvents(pool, batch, options.read?.() ?? false);
      if (!result.locked && wasNudged) nudged = true;
      if (failures > 0) log.info({ failures, batch }, 'events: sequencer recovered');
      failures = 0;
      options.onPass?.(result);
      const full = result.locked && result.sequenced >= batch;
      if (full) batch = Math.min(batchSize, batch * 2);
      return full ? performance.now() : lastStart + intervalMs;
    } catch (err) {
      // The rows stay unnumbered; the next pass takes them. One line per failure streak.
      if (failures === 0) log.warn({ err }, 'events: sequencing pass failed; retrying with backoff');
      failures++;
      batch = Math.max(MIN_BATCH, Math.floor(batch / 2));
      return performance.now() + Math.min(MAX_ERROR_BACKOFF_MS, intervalMs * 2 ** failures);
    }
  }

  planAt(performance.now());
  return {
    nudge() {
      if (failures > 0) return;
      nudged = true;
      planAt(lastStart + minGapMs);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
