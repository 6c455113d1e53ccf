/**
 * Device token verification: an asymmetric JWT whose `sub` is the device id.
 * The key is parsed once (a PEM string per call costs ~6x the verification), and
 * the algorithm list is pinned by configuration, so `none` and HS* are refused.
 */
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { DeviceTokenAlgorithm } from '../config/config.js';

export interface VerifiedDevice {
  deviceId: string;
  accountId: string | null;
}

export type DeviceTokenVerifier = (deviceId: string, token: string) => VerifiedDevice | null;

export function makeDeviceTokenVerifier(publicKeyPem: string, algorithms: readonly DeviceTokenAlgorithm[]): DeviceTokenVerifier {
  const key = crypto.createPublicKey(publicKeyPem);
  const options: jwt.VerifyOptions = { algorithms: [...algorithms], clockTolerance: 5 };
  return (deviceId, token) => {
    let claims: string | jwt.JwtPayload;
    try {
      claims = jwt.verify(token, key, options);
    } catch {
      return null;
    }
    if (typeof claims !== 'object' || claims.sub !== deviceId) return null;
    return { deviceId, accountId: accountIdOf(claims) };
  };
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
