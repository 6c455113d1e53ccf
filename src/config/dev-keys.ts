/**
 * Development key pair for device tokens. Outside production, a missing
 * `keys/public.pem` is generated together with `keys/private.pem` (git-ignored),
 * which `npm run token` signs with. In production a missing key is fatal.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import { ConfigError } from './config.js';
import type { Logger } from '../logger.js';

export function privateKeyPathFor(publicKeyPath: string): string {
  return path.join(path.dirname(publicKeyPath), 'private.pem');
}

/** Returns the public key PEM (from the `websocket-ups` service or the file), generating a dev pair first when allowed. */
export function loadOrCreateDevicePublicKey(
  config: Pick<Config, 'devicePublicKeyPath' | 'devicePublicKeyPem' | 'isProduction'>,
  logger: Logger,
): string {
  if (config.devicePublicKeyPem !== undefined) return config.devicePublicKeyPem;
  const publicKeyPath = config.devicePublicKeyPath;
  if (fs.existsSync(publicKeyPath)) return fs.readFileSync(publicKeyPath, 'utf8');
  if (config.isProduction) {
    throw new ConfigError(
      'DEVICE_PUBLIC_KEY_PATH',
      `device token public key not found at ${publicKeyPath} (push keys/public.pem, or give devicePublicKey in the websocket-ups service)`,
    );
  }
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  fs.mkdirSync(path.dirname(publicKeyPath), { recursive: true });
  fs.writeFileSync(privateKeyPathFor(publicKeyPath), privateKey, { mode: 0o600 });
  fs.writeFileSync(publicKeyPath, publicKey);
  logger.warn(
    { publicKeyPath },
    'device keys: generated a development key pair; mint a device token with: npm run token -- <deviceId> [--account <id>] [--ttl 1h]',
  );
  return publicKey;
}
