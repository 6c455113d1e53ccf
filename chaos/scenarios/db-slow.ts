/** db-slow: every chunk to and from the database is delayed `--delay-ms` (default 500) for the outage. */
import { runDatabaseOutage } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

export const dbSlow: Scenario = {
  name: 'db-slow',
  about: 'every packet to and from PostgreSQL is delayed 500 ms for --outage-seconds',
  quick: false,
  run: (ctx) =>
    runDatabaseOutage(ctx, {
      // Slow is not down: the instance may stay ready if it still commits within its timeout.
      expectNotReady: false,
      async begin(_ctx, instance) {
        await instance.proxy.setMode({ kind: 'slow', delayMs: 500 });
        return () => instance.proxy.setMode({ kind: 'forward' });
      },
    }),
};
