/** Request schemas of `/v1/dss/streams` and `/v1/rules` (zod); a failure is a 400 naming the field. */
import { z } from 'zod';
import { DSS_EVENT_TYPES, VALUE_EVENT_TYPES } from './events.js';

export const idParam = z.object({ id: z.uuid() });

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

export const ruleCreateBody = z.object({
  name,
  enabled: z.boolean().default(true),
  match,
  action,
  cooldownSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(0),
});
export const ruleUpdateBody = z
  .object({ name, enabled: z.boolean(), match, action, cooldownSeconds: z.number().int().min(0).max(7 * 24 * 3600) })
  .partial()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of name, enabled, match, action, cooldownSeconds');

export type RuleMatch = z.infer<typeof match>;
export type RuleAction = z.infer<typeof action>;
export type RuleCreateBody = z.infer<typeof ruleCreateBody>;
export type RuleUpdateBody = z.infer<typeof ruleUpdateBody>;

export { TEMPLATE_PATTERN };
