/** Request schemas of the API keys routes and CLI. */
import { z } from 'zod';
import { GLOBAL_SCOPES, SCOPES } from './scopes.js';
import { accountId } from '../devices/schemas.js';

/** The most accounts one key may be limited to. */
export const MAX_KEY_ACCOUNTS = 100;

/** The highest rate a key may be given (requests per second). */
export const RATE_LIMIT_MAX_PER_SECOND = 100_000;

export const apiKeyCreateBody = z.strictObject({
  name: z.string().min(1).max(100),
  scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
  /** Days until the key stops working; without it the key works until revoked. */
  expiresInDays: z.number().int().min(1).max(3650).optional(),
  /** This key's own rate limit; without it the configured default (API_KEY_RATE_LIMIT). */
  rateLimit: z
    .strictObject({
      /** Sustained requests per second. */
      perSecond: z.number().int().min(1).max(RATE_LIMIT_MAX_PER_SECOND),
      /** Requests at once above the rate (the bucket's size). (Default: twice `perSecond`) */
      burst: z.number().int().min(1).max(2 * RATE_LIMIT_MAX_PER_SECOND).optional(),
    })
    .optional(),
  /**
   * The accounts the key is limited to (it sees and acts only on their devices); without it, every account.
   * Such a key cannot hold a scope over things of no account (GLOBAL_SCOPES).
   */
  accounts: z.array(accountId).min(1).max(MAX_KEY_ACCOUNTS).optional(),
}).superRefine((body, ctx) => {
  if (!body.accounts) return;
  const global = body.scopes.find((scope) => GLOBAL_SCOPES.includes(scope));
  if (global) {
    ctx.addIssue({
      code: 'custom',
      path: ['scopes'],
      message: `"${global}" is not account-limited (${GLOBAL_SCOPES.join(', ')} concern every account): a key with \`accounts\` cannot hold it`,
    });
  }
});
export type ApiKeyCreateBody = z.infer<typeof apiKeyCreateBody>;

export const apiKeyIdParam = z.object({ id: z.uuid() });

/** The most keys one listing returns (oldest first): keys are made by hand, a few dozen at most. */
export const MAX_LISTED_KEYS = 1_000;
