/**
 * Checks a presented API key on every request. The key's row is looked up by its
 * lookup id and kept for at most `cacheMs` (KEY_CACHE_MS, 2 s), so that a revocation
 * made on any instance (a row update) is seen by every instance within that bound,
 * while a busy key costs one query per `cacheMs` rather than one per request. Expiry
 * is checked on every request against the clock, so an expired key fails at once.
 *
 * `last_used_at` is written at most once per `touchIntervalMs` (a minute) per key and
 * instance, after the answer and without waiting for it: never a write per request.
 */
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { parseKey, secretMatches } from './api-key.js';
import { findCredential, touchKey, type KeyCredential, type RateLimit } from './keys-sql.js';

/** How long a key's row is trusted before it is read again: the bound on how late a revocation takes effect. */
export const KEY_CACHE_MS = 2_000;
/** The most often `last_used_at` is written for one key by one instance. */
export const KEY_TOUCH_INTERVAL_MS = 60_000;
/** Cached rows (unknown lookup ids included); beyond it the cache starts over. */
const MAX_CACHED = 10_000;

export type KeyCheck =
  | { ok: true; key: { id: string; name: string; scopes: string[]; accounts: string[] | null; rateLimit: RateLimit | null } }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' | 'expired' };

export interface KeyVerifier {
  verify(presented: string): Promise<KeyCheck>;
}

export function makeKeyVerifier(deps: { pool: Pool; logger: Logger; cacheMs?: number; touchIntervalMs?: number; now?: () => number }): KeyVerifier {
  const { pool, logger } = deps;
  const cacheMs = deps.cacheMs ?? KEY_CACHE_MS;
  const touchIntervalMs = deps.touchIntervalMs ?? KEY_TOUCH_INTERVAL_MS;
  const now = deps.now ?? Date.now;
  const cache = new Map<string, { credential: KeyCredential | undefined; readAt: number }>();
  const touched = new Map<string, number>();

  async function credentialFor(lookupId: string): Promise<KeyCredential | undefined> {
    const cached = cache.get(lookupId);
    if (cached && now() - cached.readAt < cacheMs) return cached.credential;
    const credential = await findCredential(pool, lookupId);
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(lookupId, { credential, readAt: now() });
    return credential;
  }

  function touch(id: string): void {
    const last = touched.get(id);
    if (last !== undefined && now() - last < touchIntervalMs) return;
    if (touched.size >= MAX_CACHED) touched.clear();
    touched.set(id, now());
    touchKey(pool, id).catch((err: unknown) => logger.debug({ err, keyId: id }, 'api key: last_used_at not recorded'));
  }

  return {
    async verify(presented) {
      const parsed = parseKey(presented);
      if (!parsed) return { ok: false, reason: 'malformed' };
      const credential = await credentialFor(parsed.lookupId);
      if (!credential || !secretMatches(parsed.secret, credential.secretHash)) return { ok: false, reason: 'unknown' };
      if (credential.revokedAt !== null) return { ok: false, reason: 'revoked' };
      if (credential.expiresAt !== null && credential.expiresAt.getTime() <= now()) return { ok: false, reason: 'expired' };
      touch(credential.id);
      return { ok: true, key: { id: credential.id, name: credential.name, scopes: credential.scopes, accounts: credential.accounts, rateLimit: credential.rateLimit } };
    },
  };
}
