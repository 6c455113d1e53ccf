import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

const t = useTestServer({ AUTH_TIMEOUT_MS: '400', MAX_MESSAGE_BYTES: '4096' });

async function openSessions(deviceId: string) {
  const { rows } = await t.db.pool.query('select * from device_sessions where device_id = $1 order by id', [deviceId]);
  return rows;
}


describe('device gateway (websocket package client, as existing agents)', () => {
  it('authenticates, records the session, answers ping, receives a pushed actuation', async () => {
    const device = await connectAuthenticated(t.server.wsUrl, 'dev-happy', mint('dev-happy', { accountId: 'acc-1' }));
    const [session] = await openSessions('dev-happy');
    expect(session).toMatchObject({ device_id: 'dev-happy', account_id: 'acc-1', instance_id: t.server.config.instanceId, disconnected_at: null });

    device.send({ type: 'ping' });
    expect(await device.next()).toEqual({ code: 202, content: 'PONG' });

    const res = await t.server.api('/v1/devices/dev-happy/actuations', {
      method: 'POST',
      json: { componentId: 'c1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] },
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { id: string };
    const message = await device.next();
    expect(message).toMatchObject({
      code: 1024,
      id: body.id,
      content: {
        type: 'command',
        transport: 'ws',
        content: { accountId: 'acc-1', deviceId: 'dev-happy', gatewayId: 'dev-happy', componentId: 'c1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] },
      },
    });

    device.close();
    const rows = await eventually(() => openSessions('dev-happy'), (r) => r[0]?.disconnected_at !== null);
    expect(rows[0].disconnected_at).not.toBeNull();
    expect(rows[0].close_code).toBe(1000);
  });

  it('answers ping before authentication', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.send({ type: 'ping' });
    expect(await device.next()).toEqual({ code: 202, content: 'PONG' });
    device.close();
  });

  it('refuses an invalid token with 401 and close 1008', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.send({ type: 'device', deviceId: 'dev-bad', deviceToken: mint('someone-else') });
    expect(await device.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
    expect((await device.closed).code).toBe(1008);
    expect(await openSessions('dev-bad')).toHaveLength(0);
  });

  it('refuses a message that is not JSON with 401 and close 1003', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.sendRaw('hello');
    expect(await device.next()).toEqual({ code: 401, content: 'Wrong message format' });
    expect((await device.closed).code).toBe(1003);
  });

  it('refuses a JSON message of the wrong shape with 401 and close 1003', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.send({ type: 'device', deviceId: 42 });
    expect(await device.next()).toEqual({ code: 401, content: 'Wrong message format' });
    expect((await device.closed).code).toBe(1003);
  });

  it('refuses an ack before authentication with 401 and close 1008', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.send({ type: 'ack', id: '6f1c2c0e-6d5e-4a53-9d3b-2f7a4d1d8e11', statusCode: 200 });
    const answer = await device.next();
    expect(answer.code).toBe(401);
    expect((await device.closed).code).toBe(1008);
  });

  it('closes a socket that does not authenticate in time', async () => {
    const device = await connectDevice(t.server.wsUrl);
    const closed = await device.closed;
    expect(closed.code).toBe(1008);
  });

  it('closes with 1009 on a frame larger than MAX_MESSAGE_BYTES', async () => {
    const device = await connectDevice(t.server.wsUrl);
    device.sendRaw(JSON.stringify({ type: 'ping', pad: 'x'.repeat(8192) }));
    expect((await device.closed).code).toBe(1009);
  });

  it('refuses the handshake without echo-protocol', async () => {
    await expect(connectDevice(t.server.wsUrl, null)).rejects.toThrow();
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(t.server.wsUrl, 'other-protocol');
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(400);
  });

  it('replaces an older connection of the same device (1000, "session replaced")', async () => {
    const first = await connectAuthenticated(t.server.wsUrl, 'dev-twice', mint('dev-twice'));
    const second = await connectAuthenticated(t.server.wsUrl, 'dev-twice', mint('dev-twice'));
    expect(await first.closed).toEqual({ code: 1000, reason: 'session replaced' });
    const rows = await eventually(() => openSessions('dev-twice'), (r) => r.length === 2 && r[0].disconnected_at !== null);
    expect(rows[0]).toMatchObject({ close_code: 1000, close_reason: 'session replaced' });
    expect(rows[1].disconnected_at).toBeNull();
    second.close();
  });
});
