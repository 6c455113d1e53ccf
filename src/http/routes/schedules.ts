/**
 * Schedules over REST: a cron expression in a time zone that creates one job per
 * occurrence (the scheduler, `src/jobs/scheduler.ts`, fires them).
 */
import type { RouteRegistrar } from '../request-context.js';
import { v7 as uuidv7 } from 'uuid';
import type { Pool } from '../../db/pool.js';
import { nextOccurrence, nextOccurrences } from '../../jobs/occurrences.js';
import { jobIdParam, scheduleCreateBody, scheduleUpdateBody } from '../../jobs/schemas.js';
import * as sql from '../../jobs/schedules-sql.js';
import { accountScopeOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { validate } from '../validate.js';
import { callerOf, checkActuationAccount } from './actuations.js';

/** Schedules listed at most (oldest first). */
const MAX_LISTED = 1_000;
/** Runs shown per schedule, newest first. */
const RUNS_SHOWN = 10;

export function scheduleRoutes(deps: { pool: Pool; caller: string }): RouteRegistrar {
  const { pool } = deps;
  return (app) => {
    async function view(row: sql.ScheduleRow) {
      return {
        id: row.id,
        name: row.name,
        cron: row.cron,
        timezone: row.timezone,
        job: row.job,
        enabled: row.enabled,
        misfireGraceSeconds: row.misfireGraceSeconds,
        accounts: row.accounts,
        createdAt: row.createdAt,
        updatedAt: row.updatedAt,
        nextOccurrences: row.enabled ? nextOccurrences(row.cron, row.timezone, new Date(Math.max(Date.now(), row.decidedUntil.getTime())), 5) : [],
        lastRuns: await sql.lastRuns(pool, row.id, RUNS_SHOWN),
      };
    }

    app.post('/v1/schedules', async (req, reply) => {
      const body = validate(scheduleCreateBody, req.body);
      checkActuationAccount(accountScopeOf(req), body.job.actuation.accountId);
      // Deciding starts now: occurrences before the schedule existed are not misfires.
      const now = new Date();
      const row = await sql.insertSchedule(pool, {
        id: uuidv7(),
        ...body,
        accounts: accountScopeOf(req)?.slice() ?? null,
        createdBy: { kind: 'rest', caller: callerOf(req, deps.caller), requestId: String(req.id) },
        decidedUntil: now,
        nextOccurrenceAt: nextOccurrence(body.cron, body.timezone, now),
      });
      return reply.code(201).send(await view(row));
    });

    app.get('/v1/schedules', async (req) => {
      const rows = await sql.listSchedules(pool, accountScopeOf(req), MAX_LISTED);
      return { items: await Promise.all(rows.map(view)) };
    });

    app.get('/v1/schedules/:id', async (req) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      const row = await sql.getSchedule(pool, id, accountScopeOf(req));
      if (!row) throw new ApiError('NOT_FOUND', `No schedule ${id}`);
      return await view(row);
    });

    app.patch('/v1/schedules/:id', async (req) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      const patch = validate(scheduleUpdateBody, req.body);
      const accounts = accountScopeOf(req);
      checkActuationAccount(accounts, patch.job?.actuation.accountId);
      const current = await sql.getSchedule(pool, id, accounts);
      if (!current) throw new ApiError('NOT_FOUND', `No schedule ${id}`);
      const next = { ...current, ...patch };
      // A new timing, or enabling again, decides from now on: what passed meanwhile is not a misfire.
      const retimed = next.cron !== current.cron || next.timezone !== current.timezone || (next.enabled && !current.enabled);
      const decidedUntil = retimed ? new Date() : null;
      const row = await sql.updateSchedule(pool, id, accounts, {
        ...next,
        decidedUntil,
        nextOccurrenceAt: decidedUntil ? nextOccurrence(next.cron, next.timezone, decidedUntil) : null,
      });
      if (!row) throw new ApiError('NOT_FOUND', `No schedule ${id}`);
      return await view(row);
    });

    app.delete('/v1/schedules/:id', async (req, reply) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      if (!(await sql.deleteSchedule(pool, id, accountScopeOf(req)))) throw new ApiError('NOT_FOUND', `No schedule ${id}`);
      return reply.code(204).send();
    });
  };
}
