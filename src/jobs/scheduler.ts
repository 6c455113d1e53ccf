/**
 * Turns schedule occurrences into jobs. Every poll, each schedule with an occurrence due
 * is decided in one transaction, under its row lock (SKIP LOCKED, so instances share the
 * work): each occurrence since the last decided one either fires (a run row and a job) or,
 * when it is later than `misfireGraceSeconds` (every instance was down, or the database
 * was), is recorded as skipped. The run row's primary key (schedule, occurrence) makes it
 * one job per occurrence across all instances; the transaction makes run and job one.
 */
import { isDatabaseUnavailable } from '../db/errors.js';
import { withTransaction, type Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { insertJob } from './jobs-sql.js';
import { newJob } from './new-job.js';
import { nextOccurrence, occurrencesBetween } from './occurrences.js';
import * as sql from './schedules-sql.js';

/** Occurrences decided per schedule and transaction; a longer backlog continues in the next. */
const MAX_OCCURRENCES_PER_DECISION = 100;
/** Schedules decided per poll. */
const MAX_SCHEDULES_PER_POLL = 100;

export interface Scheduler {
  stop(): Promise<void>;
}

export function startScheduler(options: { pool: Pool; logger: Logger; instanceId: string; pollMs: number; onJobCreated?: () => void }): Scheduler {
  const { pool, instanceId, pollMs } = options;
  const log = options.logger.child({ component: 'scheduler' });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  /** Decides the due occurrences of one schedule; false when none was due. */
  async function decideOne(): Promise<boolean> {
    return withTransaction(pool, async (client) => {
      const due = await sql.lockDueSchedule(client);
      if (!due) return false;
      const { schedule, now } = due;
      const occurrences = occurrencesBetween(schedule.cron, schedule.timezone, schedule.decidedUntil, now, MAX_OCCURRENCES_PER_DECISION);
      let fired = 0;
      let skipped = 0;
      for (const occurrence of occurrences) {
        const late = now.getTime() - occurrence.getTime() > schedule.misfireGraceSeconds * 1000;
        if (late) {
          if (await sql.recordRun(client, { scheduleId: schedule.id, occurrence, outcome: 'skipped', jobId: null, decidedBy: instanceId })) skipped++;
          continue;
        }
        const job = newJob(schedule.job, {
          accounts: schedule.accounts,
          createdBy: { kind: 'schedule', scheduleId: schedule.id, occurrence: occurrence.toISOString() },
          scheduleId: schedule.id,
          startAt: occurrence,
        });
        if (!(await sql.recordRun(client, { scheduleId: schedule.id, occurrence, outcome: 'fired', jobId: job.id, decidedBy: instanceId }))) continue;
        await insertJob(client, job);
        fired++;
      }
      const last = occurrences.at(-1) ?? now;
      // With no occurrence found (the cron was edited meanwhile), resume after now.
      await sql.advanceSchedule(client, schedule.id, last, nextOccurrence(schedule.cron, schedule.timezone, last));
      if (fired + skipped > 0) log.info({ scheduleId: schedule.id, fired, skipped, last }, 'scheduler: occurrences decided');
      if (fired > 0) options.onJobCreated?.();
      return true;
    });
  }

  async function tick(): Promise<void> {
    try {
      for (let i = 0; i < MAX_SCHEDULES_PER_POLL && !stopped; i++) if (!(await decideOne())) break;
    } catch (err) {
      // Nothing was decided in a failed transaction: the next poll decides the same occurrences.
      if (isDatabaseUnavailable(err)) log.warn({ err }, 'scheduler: poll failed (database unavailable)');
      else log.error({ err }, 'scheduler: poll failed');
    }
  }

  function schedule(delay: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      ticking = tick().finally(() => {
        ticking = undefined;
        schedule(pollMs);
      });
    }, delay);
  }
  schedule(0);

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await ticking;
    },
  };
}
