/** Request schemas of the API keys routes and CLI. */
import { z } from 'zod';
import { SCOPES } from './scopes.js';

export const apiKeyCreateBody = z.strictObject({
  name: z.string().min(1).max(100),
  scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
  /** Days until the key stops working; without it the key works until revoked. */
  expiresInDays: z.number().int().min(1).max(3650).optional(),
});
export type ApiKeyCreateBody = z.infer<typeof apiKeyCreateBody>;

export const apiKeyIdParam = z.object({ id: z.uuid() });

/** The most keys one listing returns (oldest first): keys are made by hand, a few dozen at most. */
export const MAX_LISTED_KEYS = 1_000;
