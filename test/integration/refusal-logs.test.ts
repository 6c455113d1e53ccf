/**
 * Errors that say why (issue 11): a refused device token is logged with its reason and
 * counted by it (a bounded label); refused handshakes and malformed messages are logged at
 * debug with the remote address; all of them are client mistakes, sampled so that no
 * device controls the log's growth.
 *
 * Checked to fail without the mechanism: with the gateway's sampler built with a budget of
 * 1,000 per window, the last test counted 40 lines of one kind and failed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { captureLog } from '../helpers/log-capture.js';
import { mintDeviceToken } from '../../src/gateway/device-token.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectDevice } from '../helpers/device-client.js';
import { mint, testKeyPaths } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;
const { sink, json: logLines } = captureLog();

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { LOG_LEVEL: 'debug' }, { logDestination: sink });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

async function waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs = 5_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = logLines().find(match);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no such log line within ${timeoutMs} ms; last lines: ${JSON.stringify(logLines().slice(-5))}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function refusedWith(deviceId: string, token: string): Promise<void> {
  const device = await connectDevice(server.wsUrl);
  device.send({ type: 'device', deviceId, deviceToken: token });
  expect(await device.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
  expect((await device.closed).code).toBe(1008);
}

async function authenticationCount(result: string): Promise<number> {
  const metric = await server.app.metrics.registry.getSingleMetric('iotws_device_authentications_total')!.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe('refusals are logged with why', () => {
  it('logs and counts a refused device token by reason', async () => {
    const { privateKey: otherKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cases: [string, string, string][] = [
      ['malformed', 'r-malformed', 'not-a-jwt'],
      ['sub_mismatch', 'r-sub', mint('someone-else')],
      ['expired', 'r-expired', mint('r-expired', { expiresIn: -60 })],
      ['bad_signature', 'r-signature', mintDeviceToken(otherKey, 'r-signature')],
      ['not_yet_valid', 'r-early', jwt.sign({}, fs.readFileSync(testKeyPaths().privateKeyPath), { algorithm: 'RS256', subject: 'r-early', expiresIn: '1h', notBefore: '10m' })],
    ];
    for (const [reason, deviceId, token] of cases) {
      await refusedWith(deviceId, token);
      const line = await waitForLine((l) => l.msg === 'device: invalid token' && l.deviceId === deviceId);
      expect(line).toMatchObject({ reason, remoteAddress: '127.0.0.1', level: 30 });
      expect(await authenticationCount(reason)).toBe(1);
    }
  });

  it('logs a refused subprotocol and a bad upgrade at debug with the remote address', async () => {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(server.wsUrl, 'other-protocol');
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(400);
    expect(await waitForLine((l) => l.msg === 'device: handshake refused' && l.reason === 'subprotocol')).toMatchObject({ level: 20, remoteAddress: '127.0.0.1' });

    // An upgrade without Sec-WebSocket-Key: refused by ws, logged by us, answered 400.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1', () =>
        socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: echo-protocol\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(await waitForLine((l) => l.msg === 'device: handshake refused' && String(l.reason).includes('Sec-WebSocket-Key'))).toMatchObject({
      level: 20,
      remoteAddress: '127.0.0.1',
    });
  });

  it('logs a malformed message at debug with the remote address', async () => {
    const device = await connectDevice(server.wsUrl);
    device.sendRaw('{"type":"nonsense"}');
    expect(await device.next()).toEqual({ code: 401, content: 'Wrong message format' });
    await device.closed;
    expect(await waitForLine((l) => l.msg === 'device: malformed message')).toMatchObject({ level: 20, remoteAddress: '127.0.0.1', binary: false });
  });

  it('samples repeated mistakes: 40 malformed messages leave at most 10 lines and a count', async () => {
    const before = logLines().filter((l) => l.kind === 'device_malformed_message').length;
    for (let i = 0; i < 40; i++) {
      const device = await connectDevice(server.wsUrl);
      device.sendRaw('hello');
      await device.closed;
    }
    const logged = logLines().filter((l) => l.kind === 'device_malformed_message').length;
    expect(logged).toBeLessThanOrEqual(10);
    expect(logged).toBeGreaterThan(before);
  });
});
