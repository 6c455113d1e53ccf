/** Request schemas of `/v1/dss/streams` and `/v1/rules` (zod); a failure is a 400 naming the field. */
import { z } from 'zod';
import { DSS_EVENT_TYPES, VALUE_EVENT_TYPES } from './events.js';

export const idParam = z.object({ id: z.uuid() });
export const dsnParam = z.object({ dsn: z.string().min(1).max(256) });

/** `GET /v1/dss/streams/:id/events`: filters and the cursor (the last seq of the previous page). */
export const eventLogQuery = z.strictObject({
  dsn: z.string().min(1).max(256).optional(),
  property: z.string().min(1).max(256).optional(),
  cursor: z.string().regex(/^\d{1,15}$/, 'must be the nextCursor of the previous page').optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const name = z.string().trim().min(1).max(200);
const wsUrl = z
  .url({ protocol: /^wss?$/, error: 'must be a ws:// or wss:// URL' })
  .max(2000)
  // zod runs this refinement even when the url check above failed: never let `new URL` throw here.
  .refine((u) => !URL.canParse(u) || !new URL(u).searchParams.has('stream_key'), 'must not contain stream_key; send it as streamKey');
const streamKey = z.string().min(8).max(512).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const streamCreateBody = z.object({ name, url: wsUrl, streamKey, enabled: z.boolean().default(true) });
export const streamUpdateBody = z
  .object({ name, url: wsUrl, streamKey, enabled: z.boolean() })
  .partial()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of name, url, streamKey, enabled');
export type StreamCreateBody = z.infer<typeof streamCreateBody>;
export type StreamUpdateBody = z.infer<typeof streamUpdateBody>;

export const CONDITION_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'changed'] as const;
export type ConditionOp = (typeof CONDITION_OPS)[number];

/** Placeholders an action string may use; anything else in `{{ }}` is refused at validation. */
export const TEMPLATE_FIELDS = ['dsn', 'value', 'property_name', 'oem_model'] as const;
const TEMPLATE_PATTERN = /\{\{\s*([^}]*?)\s*\}\}/g;

const templated = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .superRefine((s, ctx) => {
      for (const [, field] of s.matchAll(TEMPLATE_PATTERN)) {
        if (!(TEMPLATE_FIELDS as readonly string[]).includes(field!)) {
          ctx.addIssue({ code: 'custom', message: `unknown placeholder {{${field}}}; use ${TEMPLATE_FIELDS.map((f) => `{{${f}}}`).join(', ')}` });
        }
      }
    });

const scalar = z.union([z.string().max(1000), z.number(), z.boolean()]);

const condition = z
  .object({ op: z.enum(CONDITION_OPS), value: scalar.optional() })
  .superRefine((c, ctx) => {
    if (c.op !== 'changed' && c.value === undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: `is required for op "${c.op}"` });
    if (c.op === 'changed' && c.value !== undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: 'must be omitted for op "changed"' });
  });

const match = z
  .object({
    eventType: z.enum(DSS_EVENT_TYPES),
    oemModel: z.string().min(1).max(256).optional(),
    dsn: z.string().min(1).max(256).optional(),
    propertyName: z.string().min(1).max(256).optional(),
    condition: condition.optional(),
    /** Interval rules only: a dsn with `*` for any run of characters (`"AC000W*"`). */
    dsnPattern: z.string().min(1).max(256).optional(),
    /** Interval rules only: the property (or the connectivity) has not been updated for this long. */
    staleForSeconds: z.number().int().min(1).max(365 * 24 * 3600).optional(),
  })
  .superRefine((m, ctx) => {
    if (m.condition && !VALUE_EVENT_TYPES.includes(m.eventType)) {
      ctx.addIssue({ code: 'custom', path: ['condition'], message: `is not available for eventType "${m.eventType}" (only ${VALUE_EVENT_TYPES.join(', ')})` });
    }
    if (m.propertyName && !['datapoint', 'datapointack'].includes(m.eventType)) {
      ctx.addIssue({ code: 'custom', path: ['propertyName'], message: `only datapoint and datapointack events have a property` });
    }
  });

const param = z.object({ name: templated(256), value: z.union([templated(4096), z.number(), z.boolean(), z.null()]) });

const action = z.object({
  deviceId: templated(256),
  componentId: templated(256),
  command: templated(256),
  params: z.array(param).max(100).default([]),
  /** 0 = never expires; omitted = the queue's default. */
  ttlSeconds: z.number().int().min(0).max(30 * 24 * 3600).optional(),
  collapseKey: templated(256).optional(),
});

/** Least and greatest interval of an interval rule. */
export const MIN_EVERY_SECONDS = 10;
export const MAX_EVERY_SECONDS = 7 * 24 * 3600;
const EVERY_UNITS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** `"90s"`, `"5m"`, `"2h"`, `"1d"` in seconds (undefined when not in that form). */
export function everySeconds(every: string): number | undefined {
  const m = /^(\d{1,7})([smhd])$/.exec(every);
  return m ? Number(m[1]) * EVERY_UNITS[m[2] as keyof typeof EVERY_UNITS] : undefined;
}

const every = z
  .string()
  .max(16)
  .superRefine((s, ctx) => {
    const seconds = everySeconds(s);
    if (seconds === undefined) ctx.addIssue({ code: 'custom', message: 'must be a count and a unit s, m, h or d, e.g. "5m"' });
    else if (seconds < MIN_EVERY_SECONDS || seconds > MAX_EVERY_SECONDS) ctx.addIssue({ code: 'custom', message: `must be between ${MIN_EVERY_SECONDS} s and 7 d` });
  });

/** What an interval rule may match: the state of a property, or the connectivity; no `changed` (state has no previous value). */
export function checkInterval(b: { every?: string | undefined; match?: z.infer<typeof match> | undefined }, ctx: z.RefinementCtx): void {
  if (!b.match) return;
  if (b.every === undefined) {
    if (b.match.staleForSeconds !== undefined) ctx.addIssue({ code: 'custom', path: ['match', 'staleForSeconds'], message: 'is only for interval rules (with every)' });
    if (b.match.dsnPattern !== undefined) ctx.addIssue({ code: 'custom', path: ['match', 'dsnPattern'], message: 'is only for interval rules (with every)' });
    return;
  }
  if (b.match.eventType !== 'datapoint' && b.match.eventType !== 'connectivity') {
    ctx.addIssue({ code: 'custom', path: ['match', 'eventType'], message: 'must be datapoint or connectivity for an interval rule (the last known state holds those)' });
  }
  if (b.match.condition?.op === 'changed') ctx.addIssue({ code: 'custom', path: ['match', 'condition', 'op'], message: '"changed" is for event rules; an interval rule tests the last known value' });
}

export const ruleCreateBody = z
  .object({
    name,
    enabled: z.boolean().default(true),
    match,
    action,
    cooldownSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(0),
    /** An interval rule: evaluated against the last known state every so often, instead of on each event. */
    every: every.optional(),
  })
  .superRefine(checkInterval);
/**
 * `every` changes an interval rule's interval; null is accepted here only to be refused with a
 * clear message by the route: a rule does not change kind (event ⇄ interval), as its state
 * (an event rule's remembered values, an interval rule's evaluations) means nothing to the other.
 */
export const ruleUpdateBody = z
  .object({ name, enabled: z.boolean(), match, action, cooldownSeconds: z.number().int().min(0).max(7 * 24 * 3600), every: every.nullable() })
  .partial()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of name, enabled, match, action, cooldownSeconds, every');

export type RuleMatch = z.infer<typeof match>;
export type RuleAction = z.infer<typeof action>;
export type RuleCreateBody = z.infer<typeof ruleCreateBody>;
export type RuleUpdateBody = z.infer<typeof ruleUpdateBody>;

export { TEMPLATE_PATTERN };
