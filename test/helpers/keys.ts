import fs from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';
import { mintDeviceToken } from '../../src/gateway/device-token.js';

export function testKeyPaths() {
  const dir = inject('keyDir');
  return { publicKeyPath: path.join(dir, 'public.pem'), privateKeyPath: path.join(dir, 'private.pem') };
}

let privateKey: string | undefined;
export function mint(deviceId: string, options: Parameters<typeof mintDeviceToken>[2] = {}): string {
  privateKey ??= fs.readFileSync(testKeyPaths().privateKeyPath, 'utf8');
  return mintDeviceToken(privateKey, deviceId, options);
}
