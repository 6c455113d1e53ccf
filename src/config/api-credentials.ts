/**
 * REST API credentials. Configured ones win. Outside production, when none are
 * configured, a password is generated at first start, kept in
 * `<dataDir>/api-credentials.json` (mode 600) and logged once, on creation only.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import type { Logger } from '../logger.js';

export interface ApiCredentials {
  username: string;
  password: string;
}

export function resolveApiCredentials(config: Pick<Config, 'apiCredentials' | 'dataDir' | 'isProduction'>, logger: Logger): ApiCredentials {
  if (config.apiCredentials) return config.apiCredentials;
  if (config.isProduction) throw new Error('API_USERNAME/API_PASSWORD are required in production');
  const file = path.join(config.dataDir, 'api-credentials.json');
  if (fs.existsSync(file)) {
    const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as ApiCredentials;
    logger.info({ file }, 'REST API: using generated credentials');
    return stored;
  }
  const generated = { username: 'admin', password: crypto.randomBytes(18).toString('base64url') };
  fs.mkdirSync(config.dataDir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(generated, null, 2) + '\n', { mode: 0o600 });
  // Logged once, deliberately and only here: the operator needs it, and it is also kept in the file.
  logger.warn({ file, username: generated.username }, `REST API: generated credentials; password: ${generated.password}`);
  return generated;
}
