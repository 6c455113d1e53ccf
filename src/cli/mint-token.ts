#!/usr/bin/env node
/**
 * npm run -s token -- <deviceId> [--account <id>] [--ttl 1h] [--key keys/private.pem]
 * Prints a device token signed with the development private key (`-s`: without npm's
 * banner, so that `TOKEN=$(npm run -s token -- …)` captures the token only).
 * Exit codes: 0 printed; 64 bad arguments or no key file.
 */
import path from 'node:path';
import { loadConfig } from '../config/config.js';
import { privateKeyPathFor } from '../config/dev-keys.js';
import { mintDeviceToken } from '../gateway/device-token.js';
import { parseCli, readNamedFile, runCli } from './args.js';

const usage = 'usage: npm run -s token -- <deviceId> [--account <id>] [--ttl <seconds or 30m, 1h, 7d>] [--key <private.pem>]';

runCli(usage, () => {
  const cli = parseCli(usage, {
    account: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
    key: { type: 'string' },
  });
  const { values, positionals } = cli;
  if (positionals.length !== 1) cli.fail('give exactly one device id');
  const deviceId = positionals[0]!;
  const ttlText = values.ttl as string;
  // jsonwebtoken's expiresIn: whole seconds, or a number with a unit (ms, s, m, h, d, w, y).
  if (!/^(\d+|\d+(\.\d+)?\s*(ms|s|m|h|d|w|y))$/.test(ttlText)) cli.fail(`--ttl must be whole seconds or a number with a unit (30m, 1h, 7d), got "${ttlText}"`);
  if (!/[1-9]/.test(ttlText)) cli.fail(`--ttl must be more than 0 (a token that is expired when minted), got "${ttlText}"`);
  const ttl = /^\d+$/.test(ttlText) ? Number(ttlText) : (ttlText as `${number}h`);
  const keyPath = values.key ? path.resolve(values.key as string) : privateKeyPathFor(loadConfig().devicePublicKeyPath);
  const privateKey = readNamedFile(cli, 'private key', keyPath, 'start the server once outside production to generate a development key pair, or give --key');
  process.stdout.write(`${mintDeviceToken(privateKey, deviceId, { accountId: values.account as string | undefined, expiresIn: ttl })}\n`);
});
