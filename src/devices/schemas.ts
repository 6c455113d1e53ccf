/**
 * Request schemas of the device registry (`/v1/devices`) and the account ids other parts
 * accept (API keys' `accounts`).
 *
 * Tags are a flat object of string keys to string values, bounded so that a device row
 * stays small and a filter stays an index look-up:
 * - at most MAX_TAGS (32) per device;
 * - a key: 1–64 characters of `A–Z a–z 0–9 _ . - /` (no `:`, which separates key and
 *   value in the `tag=key:value` filter), and not `__proto__`;
 * - a value: 1–256 characters, none of them a control character (U+0000–U+001F, U+007F)
 *   nor an unpaired surrogate.
 */
import { z } from 'zod';
import { isStorableText } from '../db/storable.js';

export const MAX_TAGS = 32;
export const TAG_KEY_PATTERN = /^[A-Za-z0-9_.\-/]{1,64}$/;
export const MAX_TAG_VALUE_LENGTH = 256;
/** Filters of one listing (`tag=` repeated). */
export const MAX_TAG_FILTERS = 32;

// Control characters: what a tag value, a name or an account id must not hold.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const printableText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !CONTROL.test(s) && isStorableText(s), 'must not contain control characters (U+0000–U+001F, U+007F) or an unpaired surrogate');

/** An account id, as device tokens carry it (`accountId`) and API keys are limited to. */
export const accountId = printableText(256);

export const tagKey = z.string().regex(TAG_KEY_PATTERN, 'a tag key is 1–64 characters of A–Z a–z 0–9 _ . - /');

/**
 * `__proto__` matches the key pattern, but zod's records drop it without a word (a plain
 * object cannot hold it as a key): refused before parsing instead, with this message.
 */
export function protoTagKeyMessage(body: unknown): string | undefined {
  const tags = (body as { tags?: unknown } | null | undefined)?.tags;
  return tags !== null && typeof tags === 'object' && Object.hasOwn(tags, '__proto__') ? 'tags.__proto__: a tag key cannot be __proto__' : undefined;
}
export const tagValue = printableText(MAX_TAG_VALUE_LENGTH);

function tagCount(tags: Record<string, unknown>, ctx: z.RefinementCtx): void {
  if (Object.keys(tags).length > MAX_TAGS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_TAGS} tags` });
}

export const tags = z.record(tagKey, tagValue).superRefine(tagCount);
export type Tags = z.infer<typeof tags>;

export const deviceName = printableText(256);

/** PUT: the whole registration; what is absent is cleared (no name, no account, no tags). */
export const devicePutBody = z.strictObject({
  name: deviceName.nullable().optional(),
  /** The account the device belongs to until a token names another. */
  accountId: accountId.nullable().optional(),
  tags: tags.optional(),
});
export type DevicePutBody = z.infer<typeof devicePutBody>;

/**
 * PATCH: a JSON merge patch (RFC 7396) of the registration: a member that is absent is
 * kept, `null` removes it; in `tags`, `"key": null` removes that tag and `tags: null` all
 * of them. The merged tags must fit MAX_TAGS (checked after merging).
 */
export const devicePatchBody = z.strictObject({
  name: deviceName.nullable().optional(),
  accountId: accountId.nullable().optional(),
  tags: z.record(tagKey, tagValue.nullable()).nullable().optional(),
});
export type DevicePatchBody = z.infer<typeof devicePatchBody>;

/** `tag=key:value` (repeatable): the device has every one of these tags. */
const tagFilter = z.string().transform((text, ctx) => {
  const colon = text.indexOf(':');
  const key = colon < 0 ? text : text.slice(0, colon);
  const value = colon < 0 ? '' : text.slice(colon + 1);
  if (!TAG_KEY_PATTERN.test(key) || !tagValue.safeParse(value).success) {
    ctx.addIssue({ code: 'custom', message: 'each tag filter is key:value (a tag key, a colon, a tag value)' });
    return z.NEVER;
  }
  return { key, value };
});

export const deviceListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** The last device id of the previous page. */
  cursor: z.string().max(512).optional(),
  online: z.enum(['true', 'false']).optional(),
  accountId: accountId.optional(),
  tag: z
    .union([tagFilter, z.array(tagFilter).max(MAX_TAG_FILTERS)])
    .optional()
    .transform((t) => (t === undefined ? [] : Array.isArray(t) ? t : [t])),
});
