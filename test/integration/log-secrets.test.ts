/**
 * Secrets never reach the logs: the real server logging at trace into a captured
 * stream while a device authenticates with a token, bad tokens are refused, and REST
 * calls carry HTTP Basic credentials (right and wrong) and a bearer token.
 */
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintDeviceToken } from '../../src/gateway/device-token.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { TEST_CREDENTIALS, startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;
const lines: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    lines.push(...chunk.toString().split('\n').filter(Boolean));
    callback();
  },
});
const logText = () => lines.join('\n');

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { LOG_LEVEL: 'trace' }, { logDestination: sink });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

describe('logs', () => {
  it('never contain a device token, a password or an Authorization header value', async () => {
    const secrets: Record<string, string> = {};

    // A device authenticates with a real token, pings, and leaves.
    const token = mint('log-dev', { accountId: 'acc-log' });
    secrets.token = token;
    const device = await connectAuthenticated(server.wsUrl, 'log-dev', token);
    device.send({ type: 'ping' });
    expect((await device.next()).code).toBe(202);

    // Bad tokens: signed by another key, a valid token presented for another device, garbage.
    const otherKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    secrets.foreignToken = mintDeviceToken(otherKey, 'log-bad-1');
    secrets.garbageToken = `garbage-${crypto.randomBytes(16).toString('hex')}`;
    for (const [deviceId, deviceToken] of [
      ['log-bad-1', secrets.foreignToken],
      ['log-bad-2', token],
      ['log-bad-3', secrets.garbageToken],
    ] as const) {
      const bad = await connectDevice(server.wsUrl);
      bad.send({ type: 'device', deviceId, deviceToken });
      expect(await bad.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
      await bad.closed;
    }
    // A malformed first message that carries a token: refused as wrong format, its text not logged.
    secrets.malformedToken = mint('log-bad-4');
    const malformed = await connectDevice(server.wsUrl);
    malformed.sendRaw(`{"type":"device","deviceId":"log-bad-4","deviceToken":"${secrets.malformedToken}"`);
    expect((await malformed.next()).code).toBe(401);
    await malformed.closed;

    // REST with the right credentials, the wrong password, and a bearer token.
    const basic = `Basic ${Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64')}`;
    secrets.password = TEST_CREDENTIALS.password;
    secrets.basic = basic;
    expect((await server.api('/v1/devices/log-dev')).status).toBe(200);
    secrets.wrongPassword = `wrong-${crypto.randomBytes(8).toString('hex')}`;
    secrets.wrongBasic = `Basic ${Buffer.from(`${TEST_CREDENTIALS.username}:${secrets.wrongPassword}`).toString('base64')}`;
    expect((await server.api('/v1/devices/log-dev', { headers: { authorization: secrets.wrongBasic } })).status).toBe(401);
    secrets.bearer = `Bearer ${token}`;
    expect((await server.api('/v1/devices', { headers: { authorization: secrets.bearer } })).status).toBe(401);

    device.close();
    await device.closed;
    await eventually(() => logText(), (t) => t.includes('"deviceId":"log-dev"') && /device: disconnected/.test(t));

    // The capture really holds what happened, so the absence below means something.
    const text = logText();
    for (const expected of ['device: authenticated', 'device: invalid token', 'device: disconnected', '"url":"/v1/devices/log-dev"', '"statusCode":401']) {
      expect(text, expected).toContain(expected);
    }
    // Request lines name the method, URL and status, never the headers.
    expect(text).toContain('"msg":"request completed"');
    expect(text).not.toContain('"headers"');

    for (const [name, secret] of Object.entries(secrets)) {
      expect(text.includes(secret), `${name} appears in the logs`).toBe(false);
      // Nor a recognisable part of it: a JWT's signature, or the base64 credentials without the scheme.
      const tail = secret.split(/[.\s]/).at(-1)!;
      if (tail.length >= 16) expect(text.includes(tail), `part of ${name} appears in the logs`).toBe(false);
    }
    expect(lines.every((line) => JSON.parse(line))).toBe(true);
  });
});
