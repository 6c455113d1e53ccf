/**
 * This instance's row in `instances`, refreshed on an interval, and the sweep that
 * closes sessions left open by instances that died (SIGKILL, lost host).
 * Any instance may sweep: the statement is idempotent.
 *
 * Every statement is bounded by the pool's query timeout, and a tick never overlaps the
 * one before, so a dead database costs one waiting tick, not a pile of them.
 *
 * After an outage: every instance's beats failed alike, so for three intervals after its
 * own beats work again an instance does not close other instances' sessions (they may
 * not have beaten yet). And an instance whose previous beat was three intervals old (cut
 * off long enough for the others to close its sessions as `instance lost`) hands those
 * sessions to `onSessionsLost`, so that their sockets, still open here, are closed and
 * reconnect into new sessions: a socket whose row is closed would never be sent anything.
 */
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import * as sessions from './sessions-sql.js';

export interface InstanceLiveness {
  stop(): Promise<void>;
}

export async function startInstanceLiveness(options: {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  intervalMs: number;
  /** Sessions of this instance that others closed while it could not beat: close their sockets. */
  onSessionsLost?(lost: { sessionId: number; deviceId: string }[]): void;
  /** The live instances (this one included), counted after each beat: per-instance shares of API key rate limits. */
  onLiveInstances?(count: number): void;
  /** Runs after each beat (device token revocations are re-read on it). */
  onBeat?(): Promise<void>;
}): Promise<InstanceLiveness> {
  const { pool, logger, instanceId, intervalMs } = options;
  await sessions.registerInstance(pool, instanceId, intervalMs);
  const orphans = await sessions.closeOwnOrphanedSessions(pool, instanceId);
  if (orphans > 0) logger.info({ sessions: orphans }, 'startup: closed sessions left open by the previous run');
  // Sessions this run opens have larger ids: the search for lost ones starts above it.
  const firstSessionFloor = await sessions.latestSessionId(pool);

  // During an outage: one warning when beats start failing, one line when they are back.
  let failing = 0;
  let sweepNotBefore = 0;
  const tick = async () => {
    const { wasPresumedDead } = await sessions.heartbeatInstance(pool, instanceId, intervalMs);
    if (failing > 0 || wasPresumedDead) sweepNotBefore = Date.now() + 3 * intervalMs;
    if (options.onLiveInstances) options.onLiveInstances(await sessions.countLiveInstances(pool));
    await options.onBeat?.();
    if (wasPresumedDead) {
      const lost = await sessions.sessionsClosedAsLost(pool, instanceId, firstSessionFloor);
      if (lost.length > 0) {
        logger.warn({ sessions: lost.length }, 'liveness: other instances closed sessions of this one while it was cut off; closing those sockets so the devices reconnect');
        options.onSessionsLost?.(lost);
      }
    }
    if (Date.now() < sweepNotBefore) return;
    const closed = await sessions.closeSessionsOfDeadInstances(pool);
    if (closed > 0) logger.info({ sessions: closed }, 'liveness: closed sessions of instances that stopped heartbeating');
  };
  await tick();
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    running ??= tick()
      .then(
        () => {
          if (failing > 0) logger.info({ failedBeats: failing }, 'liveness: heartbeat recorded again');
          failing = 0;
        },
        (err: unknown) => {
          if (failing++ === 0) logger.warn({ err }, 'liveness: heartbeat failed');
          else logger.debug({ err, failedBeats: failing }, 'liveness: heartbeat failed');
        },
      )
      .finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await sessions.removeInstance(pool, instanceId).catch(() => undefined);
    },
  };
}

/**
 * Readiness: "can this instance commit?", answered by committing a write to this instance's
 * row through the pool the write path uses (a `select 1` would pass on a read-only standby
 * or with every pooled connection but a fresh one wedged). It leaves the heartbeat time
 * alone: the liveness reads gaps in it. Concurrent callers share the probe in flight.
 */
export function makeCommitProbe(options: { pool: Pool; instanceId: string }): () => Promise<void> {
  let inFlight: Promise<void> | undefined;
  const probe = async () => {
    if (!(await sessions.touchInstance(options.pool, options.instanceId))) throw new Error('readiness: this instance is not registered');
  };
  return () => (inFlight ??= probe().finally(() => (inFlight = undefined)));
}
