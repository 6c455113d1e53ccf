/**
 * db-restart: PostgreSQL restarting, as the server sees it: every backend of the
 * database is terminated (pg_terminate_backend, over a direct connection), and every
 * new one too for the outage, so reconnects fail until it is over. Works the same with
 * an embedded PostgreSQL and with DATABASE_URL.
 */
import { sleep } from '../lib/context.js';
import { runDatabaseOutage } from '../lib/outage.js';
import type { Scenario } from './scenario.js';

export const dbRestart: Scenario = {
  name: 'db-restart',
  about: 'all backends terminated, and every new one for --outage-seconds (PostgreSQL restarting)',
  quick: false,
  run: (ctx) =>
    runDatabaseOutage(ctx, {
      expectNotReady: true,
      async begin(ctx) {
        let terminated = 0;
        let over = false;
        const terminate = async () => {
          const { rows } = await ctx.db.pool.query<{ n: number }>(
            `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid() and application_name <> 'chaos accounting'`,
          );
          terminated += rows[0]!.n;
        };
        const loop = (async () => {
          while (!over) {
            await terminate().catch(() => undefined);
            await sleep(50);
          }
        })();
        return async () => {
          over = true;
          await loop;
          ctx.figure('backends terminated during the outage', terminated);
        };
      },
    }),
};
