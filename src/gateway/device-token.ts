/**
 * Device token verification: an asymmetric JWT whose `sub` is the device id.
 * The key is parsed once (a PEM string per call costs ~6x the verification), and
 * the algorithm list is pinned by configuration, so `none` and HS* are refused.
 *
 * Beyond what jsonwebtoken checks: a header with `crit` is refused (RFC 7515 §4.1.11: a
 * recipient must refuse critical extensions it does not understand, and we understand
 * none; jsonwebtoken ignores `crit`), a token without `exp` is refused unless the policy
 * allows it, and `maxAgeSeconds` bounds the age from `iat`.
 */
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { DeviceTokenAlgorithm } from '../config/config.js';

export interface VerifiedDevice {
  deviceId: string;
  accountId: string | null;
}

/** Why a token was refused: a bounded set, fit for a metric label or a log field. */
export const TOKEN_REFUSAL_REASONS = [
  'malformed', // not a JWT, not JSON, a payload that is not an object, a bad exp/nbf type
  'bad_algorithm', // alg outside DEVICE_TOKEN_ALGORITHMS (none, HS*, …) or not matching the key
  'bad_signature',
  'expired',
  'not_yet_valid', // nbf in the future
  'sub_mismatch', // sub missing or not the device id of the message
  'crit', // a crit header parameter
  'no_exp', // DEVICE_TOKEN_REQUIRE_EXP and no exp claim
  'no_iat', // DEVICE_TOKEN_MAX_AGE set and no numeric iat claim
  'too_old', // iat older than DEVICE_TOKEN_MAX_AGE
  'revoked', // issued (iat) before the device's revocation, or without iat once one exists (POST /v1/devices/:id/revoke-tokens)
] as const;
export type TokenRefusalReason = (typeof TOKEN_REFUSAL_REASONS)[number];

/** `issuedAt`: the token's `iat` (seconds), `null` without one; the gateway checks it against revocations, now and while connected. */
export type TokenCheck = { ok: true; device: VerifiedDevice; issuedAt: number | null } | { ok: false; reason: TokenRefusalReason };

/** What a token must carry beyond a valid signature. */
export interface DeviceTokenPolicy {
  /** Refuse tokens without `exp`. (Default: true) */
  requireExp?: boolean;
  /** Refuse tokens whose `iat` is older than this many seconds, or that have no `iat`. (Default: unbounded) */
  maxAgeSeconds?: number;
}

export type DeviceTokenChecker = (deviceId: string, token: string) => TokenCheck;
export type DeviceTokenVerifier = (deviceId: string, token: string) => VerifiedDevice | null;

const CLOCK_TOLERANCE_SECONDS = 5;

export function makeDeviceTokenChecker(publicKeyPem: string, algorithms: readonly DeviceTokenAlgorithm[], policy: DeviceTokenPolicy = {}): DeviceTokenChecker {
  const key = crypto.createPublicKey(publicKeyPem);
  const options: jwt.VerifyOptions & { complete: true } = { algorithms: [...algorithms], clockTolerance: CLOCK_TOLERANCE_SECONDS, complete: true };
  const requireExp = policy.requireExp ?? true;
  const refuse = (reason: TokenRefusalReason): TokenCheck => ({ ok: false, reason });
  return (deviceId, token) => {
    let verified: jwt.Jwt;
    try {
      verified = jwt.verify(token, key, options);
    } catch (err) {
      return refuse(reasonOf(err));
    }
    const { header, payload: claims } = verified;
    if ((header as { crit?: unknown }).crit !== undefined) return refuse('crit');
    if (typeof claims !== 'object' || claims === null) return refuse('malformed');
    if (claims.sub !== deviceId) return refuse('sub_mismatch');
    if (requireExp && claims.exp === undefined) return refuse('no_exp');
    if (policy.maxAgeSeconds !== undefined) {
      if (typeof claims.iat !== 'number') return refuse('no_iat');
      if (Date.now() / 1000 - claims.iat > policy.maxAgeSeconds + CLOCK_TOLERANCE_SECONDS) return refuse('too_old');
    }
    return { ok: true, device: { deviceId, accountId: accountIdOf(claims) }, issuedAt: typeof claims.iat === 'number' && Number.isFinite(claims.iat) ? claims.iat : null };
  };
}

/** The checker's answer without the reason: the device, or null for any refusal. */
export function makeDeviceTokenVerifier(publicKeyPem: string, algorithms: readonly DeviceTokenAlgorithm[], policy: DeviceTokenPolicy = {}): DeviceTokenVerifier {
  const check = makeDeviceTokenChecker(publicKeyPem, algorithms, policy);
  return (deviceId, token) => {
    const result = check(deviceId, token);
    return result.ok ? result.device : null;
  };
}

function reasonOf(err: unknown): TokenRefusalReason {
  if (err instanceof jwt.TokenExpiredError) return 'expired';
  if (err instanceof jwt.NotBeforeError) return 'not_yet_valid';
  const message = (err as Error)?.message ?? '';
  if (message === 'invalid signature') return 'bad_signature';
  // An unsigned token (alg none) is refused for its missing signature before its alg is looked at.
  if (message === 'invalid algorithm' || message === 'jwt signature is required' || /must be an? (a)?symmetric key|"alg" parameter/.test(message)) return 'bad_algorithm';
  return 'malformed';
}

function accountIdOf(claims: jwt.JwtPayload): string | null {
  if (typeof claims.accountId === 'string') return claims.accountId;
  const first: unknown = Array.isArray(claims.accounts) ? claims.accounts[0] : undefined;
  if (first && typeof first === 'object' && typeof (first as { id?: unknown }).id === 'string') {
    return (first as { id: string }).id;
  }
  return null;
}

/** Mints a device token; used by `npm run token`, the device simulator, tests and the bench. */
export function mintDeviceToken(
  privateKeyPem: string | crypto.KeyObject,
  deviceId: string,
  options: { accountId?: string; expiresIn?: string | number; algorithm?: DeviceTokenAlgorithm } = {},
): string {
  const payload: Record<string, unknown> = { type: 'device' };
  if (options.accountId) payload.accountId = options.accountId;
  return jwt.sign(payload, privateKeyPem, {
    algorithm: options.algorithm ?? 'RS256',
    subject: deviceId,
    expiresIn: (options.expiresIn ?? '1h') as jwt.SignOptions['expiresIn'],
  });
}
