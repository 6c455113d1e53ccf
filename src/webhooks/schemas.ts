/** Request schemas of `/v1/webhooks` (zod); a failure is a 400 naming the field. */
import { z } from 'zod';

/** A webhook subscribes to some of the change feed's event types (one list, `src/events/types.ts`). */
export { EVENT_TYPES, type EventType } from '../events/types.js';
import { EVENT_TYPES } from '../events/types.js';

export const webhookIdParam = z.object({ id: z.uuid() });

const url = z
  .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .max(2000)
  // Credentials in the URL would be shown by every GET; the signature authenticates us instead.
  .refine((u) => !URL.canParse(u) || (new URL(u).username === '' && new URL(u).password === ''), 'must not contain a user name or password');
const events = z
  .array(z.enum(EVENT_TYPES))
  .min(1)
  .max(EVENT_TYPES.length)
  .transform((types) => [...new Set(types)]);
/** Printable ASCII, at least 16 characters (128 bits from a hex or base64 generator). */
const secret = z.string().min(16).max(256).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const webhookCreateBody = z.object({ url, events, secret, enabled: z.boolean().default(true) });
export const webhookUpdateBody = z
  .strictObject({ url, events, secret, enabled: z.boolean() })
  .partial()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of url, events, secret, enabled');
export type WebhookCreateBody = z.infer<typeof webhookCreateBody>;
export type WebhookUpdateBody = z.infer<typeof webhookUpdateBody>;

export const deliveriesQuery = z.object({
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  /** Deliveries of events before this id (the previous page's `nextCursor`). */
  cursor: z.coerce.number().int().min(1).optional(),
});
