#!/usr/bin/env node
/**
 * npm run device -- <deviceId> [--url ws://localhost:PORT/] [--token T | --mint [--key keys/private.pem] [--account ID]]
 *                   [--ack ok|fail|none] [--count N] [--ping-interval 30]
 *
 * Simulated device agents (src/simulator/): each actuation received is printed to
 * stdout as one JSON line; connection events go to stderr. `--count N` runs devices
 * `<deviceId>-1` … `<deviceId>-N` from this process (they need `--mint`: a token is
 * valid for one device). Ctrl-C closes the sockets and exits.
 * Exit codes: 0 after Ctrl-C/SIGTERM; 1 every device was refused; 64 bad arguments or no key file.
 */
import path from 'node:path';
import { loadConfig } from '../config/config.js';
import { privateKeyPathFor } from '../config/dev-keys.js';
import { mintDeviceToken } from '../gateway/device-token.js';
import { STOPPED, numberedDeviceIds, startDeviceFleet, type AckMode, type SimulatedDeviceEvent } from '../simulator/device-simulator.js';
import { numberOption, parseCli, readNamedFile } from './args.js';

const usage = `usage: npm run device -- <deviceId> [--url ws://localhost:PORT/] [--token <token> | --mint [--key <private.pem>] [--account <id>]]
                         [--ack ok|fail|none] [--count N] [--ping-interval <seconds>]`;

const cli = parseCli(usage, {
  url: { type: 'string' },
  token: { type: 'string' },
  mint: { type: 'boolean', default: false },
  key: { type: 'string' },
  account: { type: 'string' },
  ack: { type: 'string', default: 'ok' },
  count: { type: 'string' },
  'ping-interval': { type: 'string', default: '30' },
});
const values = cli.values as { url?: string; token?: string; mint: boolean; key?: string; account?: string; ack: string; count?: string; 'ping-interval': string };
const { positionals } = cli;
const fail = cli.fail;
const deviceId = positionals[0] ?? '';
if (!deviceId || positionals.length > 1) fail('give exactly one device id');
if (!['ok', 'fail', 'none'].includes(values.ack)) fail(`--ack must be ok, fail or none, got "${values.ack}"`);
const ack = values.ack as AckMode;
const count = values.count === undefined ? undefined : numberOption(cli, 'count', values.count, { min: 1, integer: true, what: 'a whole number of at least 1' });
const pingSeconds = numberOption(cli, 'ping-interval', values['ping-interval'], { min: 0, what: 'a number of seconds (0 turns pings off)' });
// Default: the server on this machine, on the PORT the server itself would use.
const url = values.url ?? `ws://localhost:${loadConfig().port}/`;
if (!/^wss?:\/\//.test(url)) fail(`--url must be a ws:// or wss:// URL, got "${url}"`);
if ((values.token !== undefined) === values.mint) fail('give either --token or --mint');
if (values.token !== undefined && count !== undefined) fail('--count needs --mint: a token is valid for one device only');

let token: string | ((id: string) => string);
if (values.token !== undefined) {
  token = values.token;
} else {
  const keyPath = values.key ? path.resolve(values.key) : privateKeyPathFor(loadConfig().devicePublicKeyPath);
  const privateKey = readNamedFile(cli, 'private key', keyPath, 'start the server once outside production to generate a development key pair, or give --key');
  // A fresh token for every connection: a device that reconnects hours later is not refused for an old one.
  token = (id) => mintDeviceToken(privateKey, id, { accountId: values.account, expiresIn: '1h' });
}

const log = (deviceId: string, text: string): void => {
  process.stderr.write(`${new Date().toISOString()} ${deviceId} ${text}\n`);
};

function onEvent(event: SimulatedDeviceEvent): void {
  switch (event.type) {
    case 'device:actuation':
      process.stdout.write(`${JSON.stringify({ deviceId: event.deviceId, receivedAt: event.receivedAt.toISOString(), actuation: event.message })}\n`);
      return;
    case 'device:connecting':
      return log(event.deviceId, `connecting to ${url}${event.attempt > 0 ? ` (retry ${event.attempt})` : ''}`);
    case 'device:authenticated':
      return log(event.deviceId, 'authenticated');
    case 'device:ack-sent':
      return log(event.deviceId, `acknowledged ${event.id} with ${event.statusCode}`);
    case 'device:rejected':
      return log(event.deviceId, `refused by the server (${event.code}: ${JSON.stringify(event.content)}); not reconnecting`);
    case 'device:error':
      return log(event.deviceId, `connection error: ${event.error.message}`);
    case 'device:disconnected':
      return log(
        event.deviceId,
        `disconnected (${event.code}${event.reason ? ` ${event.reason}` : ''})` +
          (event.reconnectInMs === null ? '' : `; reconnecting in ${event.reconnectInMs} ms`),
      );
    case 'device:server-message':
      return log(event.deviceId, `message: ${JSON.stringify(event.message)}`);
    case 'device:pong':
      return;
  }
}

const deviceIds = count === undefined ? [deviceId] : numberedDeviceIds(deviceId, count);
const fleet = startDeviceFleet({ url, deviceIds, token, ack, pingIntervalMs: pingSeconds * 1000, onEvent });

let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) process.exit(1);
  stopping = true;
  process.stderr.write(`${signal}: closing ${fleet.devices.length} device connection(s)\n`);
  void fleet.stop().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

// Exit 1 once every device has stopped on its own (refused tokens): nothing left to simulate.
const watch = setInterval(() => {
  if (stopping || fleet.devices.length < deviceIds.length) return;
  if (fleet.devices.every((d) => d.state === STOPPED)) {
    clearInterval(watch);
    process.stderr.write('every device was refused; exiting\n');
    process.exit(1);
  }
}, 500);
