/**
 * db-blackhole: the network to the database drops every packet both ways for the
 * outage, sockets stay open (a NAT timeout, a failover, a broken link), then forwards
 * again. Without keepalive and query timeouts the pool's connections hang for good.
 */
import { runDatabaseOutage } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

export const dbBlackhole: Scenario = {
  name: 'db-blackhole',
  about: 'packets to and from PostgreSQL vanish for --outage-seconds (sockets stay open), then flow again',
  quick: true,
  run: (ctx) =>
    runDatabaseOutage(ctx, {
      expectNotReady: true,
      async begin(_ctx, instance) {
        await instance.proxy.setMode({ kind: 'blackhole' });
        return () => instance.proxy.setMode({ kind: 'forward' });
      },
    }),
};
