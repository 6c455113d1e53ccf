/**
 * This instance's row in `instances`, refreshed on an interval, and the sweep that
 * closes sessions left open by instances that died (SIGKILL, lost host).
 * Any instance may sweep: the statement is idempotent.
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
  const timer = setInterval(() => tick().catch((err) => logger.warn({ err }, 'liveness: heartbeat failed')), intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await sessions.removeInstance(pool, instanceId).catch(() => undefined);
    },
  };
}
