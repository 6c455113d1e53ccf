/**
 * Records every event a stream takes into the devices' last known state and the
 * recent-event log (`state-sql.ts`), group-committed: one statement per flush.
 *
 * On the commit path, beside the rules: each event gets one more pipeline task that
 * resolves when its batch committed, and the stream's position only moves over events
 * whose task resolved. So a crash loses nothing: every event not yet recorded is at or
 * after the stored position and is replayed, and a replay rewrites the same rows (the
 * log ignores a seq it has; the state keeps the highest seq). The task has no keys: it
 * never waits for a rule's actuation, nor a rule for it; the batcher groups the events
 * of the whole pipeline window into one flush, which is why it costs little throughput
 * (see the README's DSS bench).
 *
 * One bad event never sinks a batch (STYLE.md 14): an event whose dsn, property or value
 * PostgreSQL cannot store is not recorded (`DSS_ERR_UNSTORABLE`), and one the database
 * refuses for a reason of its own (`isDataError`, found by the batcher's halving) is
 * dropped (`DSS_ERR_STATE_REFUSED`); both are reported to the stream's `skipped` and the
 * position moves on. The database out or a flush past its deadline rejects: replay.
 */
import { makeBatcher } from '../db/batcher.js';
import { isDataError } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { findUnstorable } from '../db/storable.js';
import type { DssErrorCode } from './errors.js';
import type { EventTask } from './event-pipeline.js';
import type { DssEvent } from './events.js';
import { recordEvents, type RecordedEvent } from './state-sql.js';

export type StateSkipReporter = (code: Extract<DssErrorCode, 'DSS_ERR_UNSTORABLE' | 'DSS_ERR_STATE_REFUSED'>, detail: string) => void;

export interface StateRecorder {
  /** The event's recording task, or undefined when there is nothing to record (skips are reported). */
  taskFor(streamId: string, event: DssEvent, skipped: StateSkipReporter): EventTask | undefined;
}

export interface StateRecorderOptions {
  pool: Pool;
  /** Events are also written to `dss_event_log` (DSS_EVENT_LOG_HOURS > 0). */
  withLog: boolean;
  /** Each flush's deadline (DATABASE_TIMEOUT_MS). */
  flushTimeoutMs: number;
  /** (Default: 1 000) */
  maxBatchSize?: number;
  /** Flushes at once. (Default: 1: one connection at most, so the rules' commits keep the rest of the pool) */
  maxConcurrent?: number;
}

export function makeStateRecorder(options: StateRecorderOptions): StateRecorder {
  const { pool, withLog } = options;
  const batcher = makeBatcher<RecordedEvent, void>(
    async (items) => {
      await recordEvents(pool, items, withLog);
      return items.map(() => undefined);
    },
    { maxBatchSize: options.maxBatchSize ?? 1_000, maxConcurrent: options.maxConcurrent ?? 1, flushTimeoutMs: options.flushTimeoutMs },
  );

  return {
    taskFor(streamId, event, skipped) {
      let value: string | null;
      try {
        value = event.value === undefined ? null : JSON.stringify(event.value);
      } catch (err) {
        skipped('DSS_ERR_UNSTORABLE', `seq ${event.seq} state: value (${(err as Error).name})`);
        return undefined;
      }
      const found = findUnstorable({ dsn: event.dsn, oemModel: event.oemModel, propertyName: event.propertyName, baseType: event.baseType, value: event.value ?? null });
      if (found) {
        skipped('DSS_ERR_UNSTORABLE', `seq ${event.seq} state: ${found.path.join('.')} (${found.reason})`);
        return undefined;
      }
      const item: RecordedEvent = {
        streamId,
        seq: event.seq,
        eventType: event.eventType,
        dsn: event.dsn,
        oemModel: event.oemModel,
        propertyName: event.propertyName,
        baseType: event.baseType,
        value,
        at: event.at,
      };
      return {
        keys: [],
        async run(handedOn) {
          handedOn();
          try {
            await batcher.add(item);
          } catch (err) {
            if (!isDataError(err)) throw err;
            // Only the SQLSTATE: the database's message can quote the event's values.
            skipped('DSS_ERR_STATE_REFUSED', `seq ${event.seq} state: SQLSTATE ${(err as { code: string }).code}`);
          }
        },
      };
    },
  };
}
