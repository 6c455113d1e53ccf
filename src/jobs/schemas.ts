/** Request schemas of `/v1/jobs` and `/v1/schedules` (zod); a failure is a 400 naming the field. */
import { z } from 'zod';
import { ACTUATION_STATUSES } from '../actuations/types.js';
import { actuationBody, paginationQuery } from '../http/schemas.js';
import { isValidCron, isValidTimezone } from './occurrences.js';

/** The most devices a `deviceIds` target may list (each becomes a row of job_targets). */
export const MAX_JOB_DEVICE_IDS = 100_000;
/** Tags of a filter target: as many and as long as the device registry allows. */
export const MAX_FILTER_TAGS = 20;

export const jobIdParam = z.object({ id: z.uuid() });

const name = z.string().trim().min(1).max(200);
const deviceId = z.string().min(1).max(256);

const target = z
  .strictObject({
    /** Up to 100,000 device ids (duplicates count once). */
    deviceIds: z.array(deviceId).min(1).max(MAX_JOB_DEVICE_IDS).optional(),
    /** Filter: devices of the registry whose tags include all of these. */
    tags: z
      .record(z.string().min(1).max(64), z.string().max(256))
      .refine((t) => Object.keys(t).length <= MAX_FILTER_TAGS, `at most ${MAX_FILTER_TAGS} tags`)
      .optional(),
    /** Filter: devices of this account. */
    accountId: z.string().min(1).max(256).optional(),
    /** Filter: devices with (true) or without (false) an open session when the job starts. */
    online: z.boolean().optional(),
    /** A filter that also targets devices matching later (registered, retagged, first connecting after the start). */
    continuous: z.literal(true).optional(),
  })
  .superRefine((t, ctx) => {
    const filtered = t.tags !== undefined || t.accountId !== undefined || t.online !== undefined;
    if (t.deviceIds !== undefined && t.continuous) ctx.addIssue({ code: 'custom', path: ['continuous'], message: 'is for a filter target; a deviceIds list does not grow' });
    else if (t.deviceIds !== undefined && filtered) ctx.addIssue({ code: 'custom', message: 'give either deviceIds or a filter (tags, accountId, online), not both' });
    if (t.deviceIds === undefined && !filtered) ctx.addIssue({ code: 'custom', message: 'give deviceIds or a filter: at least one of tags, accountId, online' });
  });
export type JobTarget = z.infer<typeof target>;

const jobFields = {
  name,
  target,
  /** What each target device gets, as POST /v1/devices/:id/actuations takes it. */
  actuation: actuationBody,
  /** Releases per minute, spread evenly; omitted: as fast as the submit path takes them. */
  rollout: z.strictObject({ maxPerMinute: z.number().int().min(1).max(1_000_000).optional() }).optional(),
  /** Abort once `minCompleted` actuations are completed and failed + timed_out reach `failedPercent` of them. */
  abort: z.strictObject({ failedPercent: z.number().min(0).max(100), minCompleted: z.number().int().min(1).max(MAX_JOB_DEVICE_IDS) }).optional(),
};

/**
 * The job a schedule creates at each occurrence: a job body without startAt (nor endAt), and
 * not continuous: every occurrence would add one more job that never ends by itself.
 */
export const scheduledJobBody = z.strictObject(jobFields).superRefine((j, ctx) => {
  if (j.target.continuous) ctx.addIssue({ code: 'custom', path: ['target', 'continuous'], message: "is not available in a schedule's job: each occurrence would add a job that never ends by itself" });
});
export type ScheduledJobBody = z.infer<typeof scheduledJobBody>;

export const jobCreateBody = z
  .strictObject({
    ...jobFields,
    /** When to start (resolve a filter, begin releasing); omitted: now. */
    startAt: z.iso.datetime({ offset: true }).optional(),
    /** A continuous target stops growing at this time; the job then completes once what it released is final. */
    endAt: z.iso.datetime({ offset: true }).optional(),
  })
  .superRefine((j, ctx) => {
    if (j.endAt === undefined) return;
    if (!j.target.continuous) ctx.addIssue({ code: 'custom', path: ['endAt'], message: 'is only for a continuous target (target.continuous: true); other jobs end when their targets are done' });
    else if (Date.parse(j.endAt) <= (j.startAt === undefined ? Date.now() : Date.parse(j.startAt))) {
      ctx.addIssue({ code: 'custom', path: ['endAt'], message: j.startAt === undefined ? 'must be in the future' : 'must be after startAt' });
    }
  });
export type JobCreateBody = z.infer<typeof jobCreateBody>;

export const JOB_STATES = ['scheduled', 'running', 'completed', 'cancelled', 'aborted'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const jobsQuery = paginationQuery.extend({ state: z.enum(JOB_STATES).optional() });
export const jobActuationsQuery = paginationQuery.extend({ status: z.enum(ACTUATION_STATUSES).optional() });

const cron = z
  .string()
  .trim()
  .min(9)
  .max(200)
  .refine((c) => c.split(/\s+/).length === 5, 'must have five fields (minute hour day-of-month month day-of-week)')
  .refine(isValidCron, 'is not a valid cron expression');
const timezone = z.string().min(1).max(64).refine(isValidTimezone, 'is not an IANA time zone (e.g. Europe/Berlin, UTC)');
const misfireGraceSeconds = z.number().int().min(0).max(7 * 86_400);

export const scheduleCreateBody = z.strictObject({
  name,
  cron,
  timezone: timezone.default('UTC'),
  job: scheduledJobBody,
  enabled: z.boolean().default(true),
  /** An occurrence missed while no instance ran fires on recovery if at most this late; else it is recorded as skipped. */
  misfireGraceSeconds: misfireGraceSeconds.default(300),
});
export type ScheduleCreateBody = z.infer<typeof scheduleCreateBody>;

export const scheduleUpdateBody = z
  .strictObject({ name, cron, timezone, job: scheduledJobBody, enabled: z.boolean(), misfireGraceSeconds })
  .partial()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of name, cron, timezone, job, enabled, misfireGraceSeconds');
export type ScheduleUpdateBody = z.infer<typeof scheduleUpdateBody>;
