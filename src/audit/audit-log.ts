/**
 * Writes audit entries in batches, after the answer (`record` never waits and never
 * fails the request it describes).
 *
 * Bounded: at most `maxPending` entries (10,000) are held, written or waiting to be. When
 * the database is unavailable, entries wait in memory and are retried together every
 * `retryMs`; beyond `maxPending` new entries are dropped, counted (`onDropped`, the
 * metric `iotws_audit_dropped_total`) and logged once per outage. So a database outage
 * loses no entry until 10,000 mutations have waited (at ~200 bytes each, ~2 MB), and
 * never blocks the API. An entry PostgreSQL refuses for itself (the batcher splits it out)
 * is dropped and logged at error; every string is made storable before it joins a batch,
 * so that should not happen. A retry after a flush that timed out but committed after all
 * writes nothing twice (each entry's `id` is unique). At shutdown, `close` makes one last bounded attempt
 * (`flushTimeoutMs`); what is still not written then is lost, and its count logged.
 */
import { makeBatcher } from '../db/batcher.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { findUnstorable, isStorableText } from '../db/storable.js';
import type { Logger } from '../logger.js';
import { insertAuditEntries, type AuditEntry } from './audit-sql.js';

export interface AuditLog {
  /** Queues an entry; returns at once. */
  record(entry: AuditEntry): void;
  /** Resolves when every entry recorded so far is written, or waits for a retry. */
  drain(): Promise<void>;
  /** One last attempt for what is pending, then stops retrying. */
  close(): Promise<void>;
}

export interface AuditLogOptions {
  pool: Pool;
  logger: Logger;
  /** Deadline of each flush (DATABASE_TIMEOUT_MS). */
  flushTimeoutMs: number;
  /** Entries held at most (written, or waiting for the database). (Default: 10 000) */
  maxPending?: number;
  /** Pause before entries that met an unavailable database are tried again. (Default: 1 000) */
  retryMs?: number;
  /** Told of each entry not written: dropped beyond `maxPending`, refused, or left at shutdown. */
  onDropped?: (reason: 'full' | 'refused' | 'shutdown', count: number) => void;
}

export const AUDIT_MAX_PENDING = 10_000;

export function makeAuditLog(options: AuditLogOptions): AuditLog {
  const { pool, logger } = options;
  const log = logger.child({ component: 'audit' });
  const maxPending = options.maxPending ?? AUDIT_MAX_PENDING;
  const retryMs = options.retryMs ?? 1_000;
  const batcher = makeBatcher<AuditEntry, void>(
    async (entries) => {
      await insertAuditEntries(pool, entries);
      return entries.map(() => undefined);
    },
    { maxBatchSize: 500, maxConcurrent: 1, flushTimeoutMs: options.flushTimeoutMs },
  );
  let pending = 0;
  let retrying: AuditEntry[] = [];
  let retryTimer: NodeJS.Timeout | undefined;
  let droppedInOutage = 0;
  let closed = false;
  let lostAtShutdown = 0;
  const inFlight = new Set<Promise<void>>();

  function write(entry: AuditEntry): void {
    const attempt = batcher.add(entry).then(
      () => {
        pending--;
        if (droppedInOutage > 0 && retrying.length === 0) {
          log.warn({ dropped: droppedInOutage }, 'audit: writing again; entries were dropped while the database was unavailable');
          droppedInOutage = 0;
        }
      },
      (err: unknown) => {
        if (isDatabaseUnavailable(err) && !closed) {
          retrying.push(entry);
          scheduleRetry();
          return;
        }
        pending--;
        if (isDatabaseUnavailable(err)) {
          lostAtShutdown++;
          return;
        }
        log.error({ err, route: entry.route, requestId: entry.requestId }, 'audit: entry refused by the database; dropped');
        options.onDropped?.('refused', 1);
      },
    );
    inFlight.add(attempt);
    void attempt.finally(() => inFlight.delete(attempt));
  }

  function scheduleRetry(): void {
    if (retryTimer || closed) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      const again = retrying;
      retrying = [];
      again.forEach(write);
    }, retryMs);
    retryTimer.unref();
  }

  return {
    record(raw) {
      if (closed) return;
      if (pending >= maxPending) {
        if (droppedInOutage++ === 0) log.warn({ maxPending }, 'audit: too many entries waiting for the database; dropping new ones until it answers');
        options.onDropped?.('full', 1);
        return;
      }
      pending++;
      write(storable(raw));
    },
    async drain() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
    async close() {
      if (closed) return;
      clearTimeout(retryTimer);
      retryTimer = undefined;
      // The last attempt: entries waiting for a retry go once more, then nothing is retried.
      const again = retrying;
      retrying = [];
      again.forEach(write);
      closed = true;
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      if (lostAtShutdown > 0) {
        log.warn({ entries: lostAtShutdown }, 'audit: entries not written before shutdown (database unavailable); lost');
        options.onDropped?.('shutdown', lostAtShutdown);
      }
    },
  };
}

/** The entry with every string PostgreSQL could store (U+0000 and lone surrogates replaced), so it cannot fail its batch. */
function storable(entry: AuditEntry): AuditEntry {
  // Nearly always all of it is: then the entry as it is, without the JSON round trip of its targets.
  const ok = (s: string | null) => s === null || isStorableText(s);
  if (ok(entry.actor) && ok(entry.route) && ok(entry.requestId) && ok(entry.remoteAddress) && findUnstorable(entry.targets) === undefined) return entry;
  const clean = (s: string | null) => (s === null || isStorableText(s) ? s : s.replaceAll('\u0000', '\uFFFD').toWellFormed());
  return {
    ...entry,
    actor: clean(entry.actor),
    route: clean(entry.route)!,
    requestId: clean(entry.requestId)!,
    remoteAddress: clean(entry.remoteAddress),
    targets: JSON.parse(JSON.stringify(entry.targets, (_key, value: unknown) => (typeof value === 'string' ? clean(value) : value))) as Record<string, unknown>,
  };
}
