/**
 * The jobs part, built once by `buildApp`: the REST routes for jobs and schedules, and
 * (after `start()`, unless JOBS_ENABLED=false) the releaser that runs this instance's share
 * of the jobs and the scheduler that turns schedule occurrences into jobs. Actuations go
 * through the submitter it is given, the same durable path as the REST API.
 */
import type { RouteRegistrar } from '../http/request-context.js';
import type { Lifecycle } from '../actuations/lifecycle.js';
import type { ActuationSubmitter } from '../actuations/types.js';
import type { Config } from '../config/config.js';
import type { Pool } from '../db/pool.js';
import { jobRoutes } from '../http/routes/jobs.js';
import type { Logger } from '../logger.js';
import { scheduleRoutes } from '../http/routes/schedules.js';
import { startJobReleaser, type JobReleaser } from './releaser.js';
import { startScheduler, type Scheduler } from './scheduler.js';

export interface JobsOptions {
  config: Pick<Config, 'instanceId' | 'jobsEnabled' | 'jobsPollMs' | 'jobsLeaseMs'>;
  logger: Logger;
  pool: Pool;
  submitter: ActuationSubmitter;
  /** Who created a job when the caller is the bootstrap administrator. */
  caller: string;
  lifecycle?: Lifecycle;
}

export interface Jobs {
  /** Its REST routes (jobs, schedules), added to the API by `app.ts`. */
  routes: RouteRegistrar[];
  start(): void;
  /** Stops releasing (each loop after its page) and firing, and lets go of the leases. */
  stop(): Promise<void>;
  /** Job ids this instance releases now. */
  heldJobs(): string[];
}

export function makeJobs(options: JobsOptions): Jobs {
  const { config, logger, pool, submitter } = options;
  let releaser: JobReleaser | undefined;
  let scheduler: Scheduler | undefined;
  const routes = [
    jobRoutes({ pool, caller: options.caller, jobStarted: () => releaser?.poke(), lifecycle: options.lifecycle }),
    scheduleRoutes({ pool, caller: options.caller }),
  ];
  return {
    routes,
    start() {
      if (!config.jobsEnabled || releaser) return;
      releaser = startJobReleaser({
        pool,
        logger,
        instanceId: config.instanceId,
        submitter,
        pollMs: config.jobsPollMs,
        leaseMs: config.jobsLeaseMs,
        lifecycle: options.lifecycle,
      });
      scheduler = startScheduler({ pool, logger, instanceId: config.instanceId, pollMs: config.jobsPollMs, onJobCreated: () => releaser?.poke() });
    },
    async stop() {
      await scheduler?.stop();
      scheduler = undefined;
      await releaser?.stop();
      releaser = undefined;
    },
    heldJobs: () => releaser?.held() ?? [],
  };
}
