/**
 * Jobs over REST: create (one actuation per target device, released by the job releaser),
 * list, read with counts and timeline, list a job's actuations, cancel.
 */
import type { RouteRegistrar } from '../request-context.js';
import type { Lifecycle } from '../../actuations/lifecycle.js';
import { cancelQueuedOfJob } from '../../actuations/transitions-sql.js';
import { withTransaction, type Pool } from '../../db/pool.js';
import * as sql from '../../jobs/jobs-sql.js';
import { newJob } from '../../jobs/new-job.js';
import { jobActuationsQuery, jobCreateBody, jobIdParam, jobsQuery } from '../../jobs/schemas.js';
import { accountScopeOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { validate } from '../validate.js';
import { callerOf, checkActuationAccount } from './actuations.js';

/** A job as the API shows it (the list leaves out counts and timeline). */
export function jobView(row: sql.JobRow) {
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    stateReason: row.stateReason,
    target: row.target,
    accounts: row.accounts,
    actuation: row.actuation,
    rollout: { maxPerMinute: row.maxPerMinute },
    abort: row.abortFailedPercent === null || row.abortMinCompleted === null ? null : { failedPercent: row.abortFailedPercent, minCompleted: row.abortMinCompleted },
    startAt: row.startAt,
    endAt: row.endAt,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    createdBy: row.createdBy,
    scheduleId: row.scheduleId,
    targets: row.targetCount,
    released: row.releasedCount,
    holder: row.leaseOwner !== null && row.leaseUntil !== null ? { instanceId: row.leaseOwner, leaseUntil: row.leaseUntil } : null,
  };
}

export function jobRoutes(deps: { pool: Pool; caller: string; jobStarted?: () => void; lifecycle?: Lifecycle }): RouteRegistrar {
  const { pool } = deps;
  return (app) => {
    async function detailed(row: sql.JobRow) {
      return { ...jobView(row), counts: await sql.jobCounts(pool, row.id), timeline: row.timeline };
    }

    app.post('/v1/jobs', async (req, reply) => {
      const { startAt, endAt, ...body } = validate(jobCreateBody, req.body);
      checkActuationAccount(accountScopeOf(req), body.actuation.accountId);
      const job = newJob(body, {
        accounts: accountScopeOf(req),
        createdBy: { kind: 'rest', caller: callerOf(req, deps.caller), requestId: String(req.id) },
        scheduleId: null,
        startAt: startAt === undefined ? null : new Date(startAt),
        endAt: endAt === undefined ? null : new Date(endAt),
      });
      const row = await withTransaction(pool, (client) => sql.insertJob(client, job));
      if (row.startAt.getTime() <= Date.now()) deps.jobStarted?.();
      return reply.code(201).send(await detailed(row));
    });

    app.get('/v1/jobs', async (req) => {
      const query = validate(jobsQuery, req.query, 'query');
      const beforeId = query.cursor ?? null;
      if (beforeId !== null && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(beforeId)) {
        throw new ApiError('VALIDATION_FAILED', 'cursor: not a cursor from a previous page');
      }
      const rows = await sql.listJobs(pool, { state: query.state ?? null, limit: query.limit, beforeId, accounts: accountScopeOf(req) });
      const last = rows.at(-1);
      return { items: rows.map(jobView), nextCursor: rows.length === query.limit && last ? last.id : null };
    });

    app.get('/v1/jobs/:id', async (req) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      const row = await sql.getJob(pool, id, accountScopeOf(req));
      if (!row) throw new ApiError('NOT_FOUND', `No job ${id}`);
      return await detailed(row);
    });

    app.get('/v1/jobs/:id/actuations', async (req) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      const query = validate(jobActuationsQuery, req.query, 'query');
      const accounts = accountScopeOf(req);
      if (!(await sql.getJob(pool, id, accounts))) throw new ApiError('NOT_FOUND', `No job ${id}`);
      const items = await sql.listJobActuations(pool, id, { status: query.status ?? null, limit: query.limit, afterDeviceId: query.cursor ?? null }, accounts);
      const last = items.at(-1);
      return { items, nextCursor: items.length === query.limit && last ? last.deviceId : null };
    });

    app.post('/v1/jobs/:id/cancel', async (req) => {
      const { id } = validate(jobIdParam, req.params, 'params');
      const accounts = accountScopeOf(req);
      const before = await sql.getJob(pool, id, accounts);
      if (!before) throw new ApiError('NOT_FOUND', `No job ${id}`);
      const by = callerOf(req, deps.caller);
      if (!(await sql.stopJob(pool, id, ['scheduled', 'running'], 'cancelled', `cancelled by ${by}`, by))) {
        const now = await sql.getJob(pool, id, accounts);
        throw new ApiError('CONFLICT', `Job ${id} is ${now?.state ?? before.state}; only scheduled or running jobs can be cancelled`);
      }
      // At once, so the answer's counts show it; the releasing instance sweeps again after its last page.
      await cancelQueuedOfJob(pool, id, deps.lifecycle);
      return await detailed((await sql.getJob(pool, id, accounts))!);
    });
  };
}
