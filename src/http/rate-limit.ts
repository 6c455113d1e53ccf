/**
 * Rate limits of API keys: a token bucket per key, `perSecond` sustained and `burst` at
 * once (the key's own `rateLimit`, else API_KEY_RATE_LIMIT). Beyond it: `429 RATE_LIMITED`
 * with `Retry-After`, the whole seconds until the bucket holds a request again.
 *
 * Across instances, each enforces its share: the limit divided by the live instances
 * (rows of `instances` within three of their heartbeats, counted on every heartbeat of
 * this one). Nothing is counted in the database, so a request costs no query. The
 * tolerance: with requests spread evenly over the instances (Cloud Foundry's router
 * round-robins), a key gets its limit; all on one instance, it gets limit ÷ instances;
 * for up to one INSTANCE_HEARTBEAT_MS after an instance starts or three after one dies,
 * the shares are computed with the old count (so at most (n+1)/n of the limit).
 *
 * The bootstrap administrator (HTTP Basic) is not limited: it is the operator's
 * break-glass credential, and the integrations that used HTTP Basic before API keys
 * existed keep working as they did. Requests refused before authentication (401) are
 * not counted either.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { RateLimit } from '../keys/keys-sql.js';
import { checksOwnAccess, principalOf } from './auth.js';
import { ApiError } from './errors.js';

/** Buckets kept; beyond it the full (idle) ones go, and if none is full, all of them (a new bucket is full). */
const MAX_BUCKETS = 10_000;

export interface RateLimiter {
  /** Takes one request from the key's bucket: `0` when allowed, else the seconds until one would be. */
  take(keyId: string, limit: RateLimit): number;
}

export function makeRateLimiter(deps: { liveInstances: () => number; now?: () => number }): RateLimiter {
  const now = deps.now ?? (() => performance.now());
  /** Tokens left, when last refilled, and the share it was last refilled at (to tell an idle, full bucket). */
  const buckets = new Map<string, { tokens: number; refilledAt: number; rate: number; size: number }>();

  const isFull = (b: { tokens: number; refilledAt: number; rate: number; size: number }, at: number) => b.tokens + ((at - b.refilledAt) / 1000) * b.rate >= b.size;

  return {
    take(keyId, limit) {
      const instances = Math.max(1, deps.liveInstances());
      const rate = limit.perSecond / instances;
      const size = Math.max(1, limit.burst / instances);
      const at = now();
      let bucket = buckets.get(keyId);
      if (!bucket) {
        if (buckets.size >= MAX_BUCKETS) {
          for (const [id, b] of buckets) if (isFull(b, at)) buckets.delete(id);
          if (buckets.size >= MAX_BUCKETS) buckets.clear();
        }
        bucket = { tokens: size, refilledAt: at, rate, size };
        buckets.set(keyId, bucket);
      }
      bucket.tokens = Math.min(size, bucket.tokens + ((at - bucket.refilledAt) / 1000) * rate);
      bucket.refilledAt = at;
      bucket.rate = rate;
      bucket.size = size;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return (1 - bucket.tokens) / rate;
    },
  };
}

/** 429 RATE_LIMITED with Retry-After for an API key over its limit (an `onRequest` hook); `defaultLimit` undefined: keys without their own are not limited. */
export function rateLimit(deps: { limiter: RateLimiter; defaultLimit: RateLimit | undefined }) {
  return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const principal = principalOf(request);
    if (principal?.kind !== 'key' || checksOwnAccess(request)) return done();
    const limit = principal.rateLimit ?? deps.defaultLimit;
    if (!limit) return done();
    const waitSeconds = deps.limiter.take(principal.id, limit);
    if (waitSeconds === 0) return done();
    const retryAfter = Math.max(1, Math.ceil(waitSeconds));
    reply.raw.setHeader('Retry-After', String(retryAfter));
    done(new ApiError('RATE_LIMITED', `This API key is over its rate limit (${limit.perSecond} requests/s, burst ${limit.burst}); retry after ${retryAfter} s`));
  };
}
