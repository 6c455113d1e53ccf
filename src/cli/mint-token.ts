/**
 * npm run token -- <deviceId> [--account <id>] [--ttl 1h] [--key keys/private.pem]
 * Prints a device token signed with the development private key.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import { privateKeyPathFor } from '../config/dev-keys.js';
import { mintDeviceToken } from '../gateway/device-token.js';

const usage = 'usage: npm run token -- <deviceId> [--account <id>] [--ttl 1h] [--key <private.pem>]';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    account: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
    key: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
const deviceId = positionals[0];
if (values.help || !deviceId) {
  process.stderr.write(`${usage}\n`);
  process.exit(values.help ? 0 : 2);
}
const config = loadConfig();
const keyPath = values.key ? path.resolve(values.key) : privateKeyPathFor(config.devicePublicKeyPath);
if (!fs.existsSync(keyPath)) {
  process.stderr.write(`private key not found at ${keyPath}; start the server once outside production to generate a development key pair\n`);
  process.exit(1);
}
const ttl = /^\d+$/.test(values.ttl!) ? Number(values.ttl) : values.ttl!;
process.stdout.write(`${mintDeviceToken(fs.readFileSync(keyPath, 'utf8'), deviceId, { accountId: values.account, expiresIn: ttl })}\n`);
