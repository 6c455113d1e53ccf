/**
 * The API key itself: `iotws_<lookup id>_<secret>`.
 * - `iotws_` lets secret scanners (GitHub's, gitleaks) recognise a leaked key.
 * - The lookup id (8 random bytes, hex) finds the row; it is not secret and is shown
 *   in listings as the key's `prefix`.
 * - The secret (32 random bytes, base64url) is shown once, at creation; the database
 *   holds only its SHA-256. A 256-bit random secret cannot be guessed or brute-forced
 *   from its hash, so unlike a password it needs no slow, salted hash (bcrypt, argon2):
 *   one fast hash per request is enough, and it is compared in constant time.
 */
import crypto from 'node:crypto';

export const KEY_PREFIX = 'iotws_';
const KEY_PATTERN = /^iotws_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedKey {
  lookupId: string;
  /** The whole key, `iotws_<lookup id>_<secret>`: given to the caller once. */
  key: string;
  secretHash: Buffer;
}

export function generateKey(): GeneratedKey {
  const lookupId = crypto.randomBytes(8).toString('hex');
  const secret = crypto.randomBytes(32).toString('base64url');
  return { lookupId, key: `${KEY_PREFIX}${lookupId}_${secret}`, secretHash: hashSecret(secret) };
}

/** The lookup id and secret of a well-formed key; `undefined` for anything else. */
export function parseKey(text: string): { lookupId: string; secret: string } | undefined {
  const match = KEY_PATTERN.exec(text);
  return match ? { lookupId: match[1]!, secret: match[2]! } : undefined;
}

export function hashSecret(secret: string): Buffer {
  return crypto.createHash('sha256').update(secret).digest();
}

/** Whether `secret` hashes to `expected`, in time independent of where they differ. */
export function secretMatches(secret: string, expected: Buffer): boolean {
  const given = hashSecret(secret);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

/** What a listing shows of a key: enough to recognise it, nothing that opens anything. */
export function displayPrefix(lookupId: string): string {
  return `${KEY_PREFIX}${lookupId}`;
}
