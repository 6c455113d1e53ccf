/**
 * Revocable device tokens against real servers on one database:
 * `POST /v1/devices/:id/revoke-tokens` closes (1008) a device connected with an older
 * token on the instance that took the call and on ANOTHER instance (by NOTIFY), and also
 * without the NOTIFY (a revocation written behind the servers' backs is found by the
 * heartbeat's read, within INSTANCE_HEARTBEAT_MS); older tokens and tokens without `iat`
 * are refused from then on, across a restart; newer tokens and other devices are not
 * disturbed.
 *
 * Checked to fail without the mechanism: with `gateway.closeRevoked` made a no-op the
 * live sessions stay open (the `closed` waits time out), with the `revoked` check in
 * gateway.ts `authenticate` removed a refused token first opens a session (the restart
 * test counts one), and with the heartbeat's `revocations.refresh()` removed from app.ts
 * the test without NOTIFY times out.
 */
import fs from 'node:fs';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, connectDevice, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint, testKeyPaths } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let a: TestServer;
let b: TestServer;
// A short heartbeat, so that the path without NOTIFY is seen quickly.
const HEARTBEAT_MS = 300;

beforeAll(async () => {
  db = await createTestDatabase();
  a = await startTestServer(db, { INSTANCE_ID: 'revoke-a', INSTANCE_HEARTBEAT_MS: String(HEARTBEAT_MS) });
  b = await startTestServer(db, { INSTANCE_ID: 'revoke-b', INSTANCE_HEARTBEAT_MS: String(HEARTBEAT_MS) });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await db?.drop();
});

/** A token with exactly these claims (`iat` given, or none). */
function sign(deviceId: string, claims: { iat?: number }): string {
  const key = fs.readFileSync(testKeyPaths().privateKeyPath, 'utf8');
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign({ sub: deviceId, exp: now + 3600, ...claims }, key, { algorithm: 'RS256', ...(claims.iat === undefined ? { noTimestamp: true } : {}) });
}

async function revoke(on: TestServer, deviceId: string): Promise<{ deviceId: string; revokedBefore: string }> {
  const res = await on.api(`/v1/devices/${encodeURIComponent(deviceId)}/revoke-tokens`, { method: 'POST' });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { deviceId: string; revokedBefore: string };
}

/** Authenticates with `token`; the server's first answer and how the socket closed (if it did). */
async function tryToken(url: string, deviceId: string, token: string): Promise<{ code: number; device: DeviceClient }> {
  const device = await connectDevice(url);
  device.send({ type: 'device', deviceId, deviceToken: token });
  const answer = await device.next(10_000);
  return { code: answer.code, device };
}

/** The close, or a failure naming what did not happen within `ms`. */
function closedWithin(device: DeviceClient, ms: number): Promise<{ code: number; reason: string }> {
  return Promise.race([device.closed, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms))]);
}

async function pingAnswered(device: DeviceClient): Promise<number> {
  device.send({ type: 'ping' });
  return (await device.next(5_000)).code;
}

describe('POST /v1/devices/:deviceId/revoke-tokens', () => {
  it('closes the device on the other instance with 1008, and refuses its older tokens from then on', async () => {
    const oldToken = mint('rv-cross');
    const onB = await connectAuthenticated(b.wsUrl, 'rv-cross', oldToken);
    const bystander = await connectAuthenticated(b.wsUrl, 'rv-bystander', mint('rv-bystander'));
    const revocation = await revoke(a, 'rv-cross');
    expect(revocation.deviceId).toBe('rv-cross');
    // Well within INSTANCE_HEARTBEAT_MS is the NOTIFY's doing; the bound is generous for a loaded machine.
    expect(await closedWithin(onB, 10_000)).toEqual({ code: 1008, reason: 'device token revoked' });
    // The session row is closed after the socket (asynchronously).
    const rows = await eventually(
      async () => (await db.pool.query('select instance_id, close_code, close_reason from device_sessions where device_id = $1', ['rv-cross'])).rows,
      (r) => r[0]?.close_code !== null,
    );
    expect(rows).toEqual([{ instance_id: 'revoke-b', close_code: 1008, close_reason: 'device token revoked' }]);

    // The old token is refused on both instances (401, then 1008).
    for (const server of [a, b]) {
      const attempt = await tryToken(server.wsUrl, 'rv-cross', oldToken);
      expect(attempt.code).toBe(401);
      expect((await closedWithin(attempt.device, 10_000)).code).toBe(1008);
    }
    // A token issued after the revocation's second works.
    const fresh = sign('rv-cross', { iat: Math.ceil(Date.parse(revocation.revokedBefore) / 1000) });
    const again = await connectAuthenticated(b.wsUrl, 'rv-cross', fresh);
    expect(await pingAnswered(again)).toBe(202);
    // The other device on the same instance was not disturbed.
    expect(await pingAnswered(bystander)).toBe(202);
    again.close();
    bystander.close();
  });

  it('refuses tokens without iat once a revocation exists (and accepted them before)', async () => {
    const noIat = sign('rv-no-iat', {});
    const connected = await connectAuthenticated(a.wsUrl, 'rv-no-iat', noIat);
    await revoke(b, 'rv-no-iat');
    expect(await closedWithin(connected, 10_000)).toEqual({ code: 1008, reason: 'device token revoked' });
    const attempt = await tryToken(a.wsUrl, 'rv-no-iat', noIat);
    expect(attempt.code).toBe(401);
    // Even a far-future-looking token without iat: no iat, no way to tell it is newer.
    expect((await tryToken(b.wsUrl, 'rv-no-iat', sign('rv-no-iat', {}))).code).toBe(401);
  });

  it('closes a live session within INSTANCE_HEARTBEAT_MS even when the NOTIFY never comes (the heartbeat re-reads)', async () => {
    const device = await connectAuthenticated(b.wsUrl, 'rv-silent', mint('rv-silent'));
    // Written behind the servers' backs: no pg_notify, as if the notification were lost.
    await db.pool.query(`insert into device_token_revocations (device_id, revoked_before) values ('rv-silent', now())`);
    expect(await closedWithin(device, 10_000)).toEqual({ code: 1008, reason: 'device token revoked' });
  });

  it('answers 400 for a device id it cannot hold, and needs devices:write', async () => {
    expect((await a.api(`/v1/devices/${'x'.repeat(300)}/revoke-tokens`, { method: 'POST' })).status).toBe(400);
    const created = await a.api('/v1/api-keys', { method: 'POST', json: { name: 'reader', scopes: ['devices:read'] } });
    const { key } = (await created.json()) as { key: string };
    const refused = await a.api('/v1/devices/rv-any/revoke-tokens', { method: 'POST', headers: { authorization: `Bearer ${key}` } });
    expect(refused.status).toBe(403);
  });
});

describe('a revocation', () => {
  it('holds across a restart: a new server (its memory empty) reads it before the first device connects', async () => {
    const oldToken = mint('rv-restart');
    await revoke(a, 'rv-restart');
    const restartedDb = db;
    const c = await startTestServer(restartedDb, { INSTANCE_ID: 'revoke-c' });
    try {
      const attempt = await tryToken(c.wsUrl, 'rv-restart', oldToken);
      expect(attempt.code).toBe(401);
      expect((await closedWithin(attempt.device, 10_000)).code).toBe(1008);
      // Refused at connect, from memory: no session was opened (the check after opening one is only the fallback).
      const { rows } = await db.pool.query('select count(*)::int as n from device_sessions where device_id = $1', ['rv-restart']);
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await c.close();
    }
  });
});
