/** A job body (REST, or a schedule's occurrence) turned into the row to insert. */
import { v7 as uuidv7 } from 'uuid';
import type { JobCause, NewJob } from './jobs-sql.js';
import type { ScheduledJobBody } from './schemas.js';

export function newJob(
  body: ScheduledJobBody,
  context: { accounts: readonly string[] | null; createdBy: JobCause; scheduleId: string | null; startAt: Date | null; endAt?: Date | null },
): NewJob {
  const { deviceIds, ...filter } = body.target;
  return {
    // Time-ordered: the list pages by id, newest first.
    id: uuidv7(),
    name: body.name,
    target: deviceIds ? { kind: 'deviceIds', count: deviceIds.length } : { kind: 'filter', ...filter },
    deviceIds: deviceIds ?? null,
    accounts: context.accounts,
    actuation: body.actuation,
    maxPerMinute: body.rollout?.maxPerMinute ?? null,
    abort: body.abort ?? null,
    startAt: context.startAt,
    endAt: context.endAt ?? null,
    createdBy: context.createdBy,
    scheduleId: context.scheduleId,
  };
}
