/**
 * This instance's row in `instances`, refreshed on an interval, and the sweep that
 * closes sessions left open by instances that died (SIGKILL, lost host).
 * Any instance may sweep: the statement is idempotent.
 *
 * Every statement is bounded by the pool's query timeout, and a tick never overlaps the
 * one before, so a dead database costs one waiting tick, not a pile of them.
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
}): Promise<InstanceLiveness> {
  const { pool, logger, instanceId, intervalMs } = options;
  await sessions.registerInstance(pool, instanceId, intervalMs);
  const orphans = await sessions.closeOwnOrphanedSessions(pool, instanceId);
  if (orphans > 0) logger.info({ sessions: orphans }, 'startup: closed sessions left open by the previous run');

  const tick = async () => {
    await sessions.heartbeatInstance(pool, instanceId, intervalMs);
    const lost = await sessions.closeSessionsOfDeadInstances(pool);
    if (lost > 0) logger.info({ sessions: lost }, 'liveness: closed sessions of instances that stopped heartbeating');
  };
  await tick();
  let running: Promise<void> | undefined;
  // During an outage: one warning when beats start failing, one line when they are back.
  let failing = 0;
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
 * Readiness: "can this instance commit?", answered by committing: the heartbeat upsert on
 * this instance's row, through the pool the write path uses (a `select 1` would pass on a
 * read-only standby or with every pooled connection but a fresh one wedged). Concurrent
 * callers share the probe in flight.
 */
export function makeCommitProbe(options: { pool: Pool; instanceId: string; intervalMs: number }): () => Promise<void> {
  let inFlight: Promise<void> | undefined;
  return () => (inFlight ??= sessions.heartbeatInstance(options.pool, options.instanceId, options.intervalMs).finally(() => (inFlight = undefined)));
}
