/** db-refuse: the database refuses connections (existing ones reset, new ones ECONNREFUSED) for the outage. */
import { runDatabaseOutage } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

export const dbRefuse: Scenario = {
  name: 'db-refuse',
  about: 'PostgreSQL refuses connections for --outage-seconds (existing ones reset) under load',
  quick: true,
  run: (ctx) =>
    runDatabaseOutage(ctx, {
      expectNotReady: true,
      async begin(_ctx, instance) {
        await instance.proxy.setMode({ kind: 'refuse' });
        return () => instance.proxy.setMode({ kind: 'forward' });
      },
    }),
};
