import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import { ApiError } from '../errors.js';

/**
 * Unauthenticated probes, and what each means:
 * - `/healthz` is liveness: the process and its event loop answer. It never touches the
 *   database, so an outage does not make the platform restart every instance (and drop
 *   every device socket) when restarting cannot help.
 * - `/readyz` is readiness: this instance can commit now. `canCommit` runs a write that
 *   commits through the same pool the write path uses (the instance heartbeat), so a full
 *   pool, a read-only server or a silent network fail it too; it is bounded by the pool's
 *   checkout and query timeouts (`DATABASE_TIMEOUT_MS`). Concurrent probes share the one in
 *   flight, so probes cannot pile up on a dead pool.
 */
export function healthRoutes(pool: Pool, isShuttingDown: () => boolean, canCommit?: () => Promise<void>): RouteRegistrar {
  return (app) => {
    const probe = canCommit ?? (async () => void (await pool.query('select 1')));
    let inFlight: Promise<void> | undefined;
    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async () => {
      if (isShuttingDown()) throw new ApiError('SHUTTING_DOWN');
      try {
        await (inFlight ??= probe().finally(() => (inFlight = undefined)));
      } catch (err) {
        throw new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
      }
      return { status: 'ready' };
    });
  };
}
