/**
 * Opening device sessions with group commit: devices authenticating at the same moment
 * share one statement and one commit (a commit per device capped a reconnect storm at
 * pool size / commit latency, and PostgreSQL's CPU per row falls ~10x from 1-row to
 * 100-row statements). One statement at a time, and at most one per SESSION_FLUSH_GAP_MS:
 * meanwhile the next batch gathers. Alone, a device still gets the one-row statement at
 * once. Each device's 200 still follows its own committed row.
 *
 * A failure fails only the devices it concerns: a device whose row PostgreSQL refuses
 * is split out of the batch by the batcher (the gateway refuses such identities before
 * they get here, see `isStorableIdentity`); a device opening elsewhere at this very
 * moment gets its own statement, with retries. Each batch has the flush deadline; rows
 * a batch commits after it (their sockets were answered 500 and closed) are closed.
 */
import { makeBatcher, type Batcher } from '../db/batcher.js';
import type { Pool } from '../db/pool.js';
import * as sessions from './sessions-sql.js';

const UNIQUE_VIOLATION = '23505';
/** Two statements registering the same devices (`devices` rows) in crossing orders: one is chosen to fail, and retried. */
const DEADLOCK = '40P01';

/**
 * A session statement starts at least this long after the previous one started: in a reconnect
 * storm a statement then carries ~150 devices instead of ~33, and PostgreSQL's CPU per connect
 * halved at 19,900 devices (planning and commit per statement, not per row), at the same
 * connect rate (docs/benchmarks.md). A device after a quiet spell still goes at once.
 */
const SESSION_FLUSH_GAP_MS = 40;

export type OpenRequest = { deviceId: string; accountId: string | null; remoteAddress: string | null };

/** Resolves with the opened session, or with the Error that concerns this device alone. */
export type SessionOpener = Batcher<OpenRequest, sessions.OpenedSession | Error>;

export function makeSessionOpener(options: { pool: Pool; instanceId: string; flushTimeoutMs?: number }): SessionOpener {
  const { pool, instanceId } = options;

  async function openSessionWithRetry({ deviceId, accountId, remoteAddress }: OpenRequest): Promise<sessions.OpenedSession> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await sessions.openSession(pool, { deviceId, accountId, instanceId, remoteAddress });
      } catch (err) {
        // Two connections of one device racing on different sockets: the loser retries and takes over.
        const code = (err as { code?: string }).code;
        if ((code !== UNIQUE_VIOLATION && code !== DEADLOCK) || attempt >= 3) throw err;
      }
    }
  }

  async function openSessionBatch(items: OpenRequest[]): Promise<(sessions.OpenedSession | Error)[]> {
    const one = (item: OpenRequest) => openSessionWithRetry(item).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    if (items.length === 1) return [await one(items[0]!)];
    // A device twice in one batch (two sockets racing) would break the one-open-session
    // index: its first request goes in the batch, later ones after it, one by one, each
    // taking over the one before, as when they race on separate statements.
    const firstOf = new Map<string, number>();
    const later: number[] = [];
    items.forEach((item, i) => (firstOf.has(item.deviceId) ? later.push(i) : firstOf.set(item.deviceId, i)));
    const batch = [...firstOf.values()];
    const results: (sessions.OpenedSession | Error)[] = new Array(items.length);
    try {
      const opened = await sessions.openSessions(pool, instanceId, batch.map((i) => items[i]!));
      batch.forEach((i, k) => (results[i] = opened[k]!));
    } catch (err) {
      // One of these devices opening elsewhere at this very moment: one statement per device, with retries.
      // (A deadlock with another instance's batch rolled this one back whole: the same.)
      // Anything else (a row PostgreSQL refuses) goes back to the batcher, which splits the batch.
      const code = (err as { code?: string }).code;
      if (code !== UNIQUE_VIOLATION && code !== DEADLOCK) throw err;
      await Promise.all(batch.map(async (i) => (results[i] = await one(items[i]!))));
    }
    for (const i of later) results[i] = await one(items[i]!);
    return results;
  }

  return makeBatcher<OpenRequest, sessions.OpenedSession | Error>(openSessionBatch, {
    maxBatchSize: 500,
    maxConcurrent: 1,
    minFlushIntervalMs: SESSION_FLUSH_GAP_MS,
    flushTimeoutMs: options.flushTimeoutMs,
    // Rows committed after their devices were answered 500 and closed: close them, or they stay open.
    onLateResult(items, results) {
      results.forEach((r, i) => {
        if (r instanceof Error) return;
        sessions.closeSession(pool, { deviceId: items[i]!.deviceId, sessionId: r.sessionId }, 1011, 'session opening timed out', new Date()).catch(() => undefined);
      });
    },
  });
}
