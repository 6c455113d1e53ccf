/**
 * The device simulator's side of the protocol, observed from a small `ws` server of the
 * test's own (the server's ack handling is not what is under test here): what it sends
 * on connect, on an actuation with each --ack mode, as pings, and how it reconnects.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { backoffDelayMs } from '../../src/simulator/backoff.js';
import {
  AUTHENTICATED,
  STOPPED,
  makeSimulatedDevice,
  numberedDeviceIds,
  startDeviceFleet,
  type SimulatedDevice,
  type SimulatedDeviceEvent,
  type SimulatedDeviceOptions,
} from '../../src/simulator/device-simulator.js';
import { eventually } from '../helpers/eventually.js';

interface Peer {
  socket: WebSocket;
  protocol: string;
  received: Record<string, unknown>[];
  closed: boolean;
}

/** A stand-in server: records every frame; answers device with 200 and ping with 202 unless told not to. */
async function startFakeServer(options: { answerPings?: boolean; rejectTokens?: boolean } = {}) {
  const peers: Peer[] = [];
  const server = http.createServer();
  const wss = new WebSocketServer({ server, handleProtocols: (p) => (p.has('echo-protocol') ? 'echo-protocol' : false) });
  wss.on('connection', (socket) => {
    const peer: Peer = { socket, protocol: socket.protocol, received: [], closed: false };
    peers.push(peer);
    socket.on('close', () => (peer.closed = true));
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as Record<string, unknown>;
      peer.received.push(message);
      if (message.type === 'device') {
        if (options.rejectTokens) {
          socket.send(JSON.stringify({ code: 401, content: 'Invalid device token for device' }));
          socket.close(1008, 'invalid device token');
        } else socket.send(JSON.stringify({ code: 200, content: 'Subscribed to ws server' }));
      }
      if (message.type === 'ping' && options.answerPings !== false) socket.send(JSON.stringify({ code: 202, content: 'PONG' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/`,
    port,
    peers,
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const actuation = (id: string) =>
  JSON.stringify({
    code: 1024,
    id,
    content: {
      type: 'command',
      transport: 'ws',
      content: { accountId: null, deviceId: 'd', gatewayId: 'd', componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] },
    },
  });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function device(options: Partial<SimulatedDeviceOptions> & Pick<SimulatedDeviceOptions, 'url'>) {
  const events: SimulatedDeviceEvent[] = [];
  const d = makeSimulatedDevice({ deviceId: 'sim-1', token: 'token-1', pingIntervalMs: 0, ...options, onEvent: (e) => events.push(e) });
  cleanups.push(() => d.stop());
  return { device: d, events };
}

async function fake(options?: Parameters<typeof startFakeServer>[0]) {
  const server = await startFakeServer(options);
  cleanups.push(() => server.close());
  return server;
}

describe('a simulated device', () => {
  it('connects with echo-protocol and authenticates with the device message', async () => {
    const server = await fake();
    const { device: d, events } = device({ url: server.url, deviceId: 'sim-auth', token: 'the-token' });
    await d.authenticated();
    expect(d.state).toBe(AUTHENTICATED);
    expect(server.peers[0]!.protocol).toBe('echo-protocol');
    expect(server.peers[0]!.received).toEqual([{ type: 'device', deviceId: 'sim-auth', deviceToken: 'the-token' }]);
    expect(events.map((e) => e.type)).toEqual(['device:connecting', 'device:authenticated']);
  });

  it.each([
    ['ok', { statusCode: 200, reasonPhrase: 'OK' }],
    ['fail', { statusCode: 500, reasonPhrase: 'Internal Server Error' }],
  ] as const)('--ack %s acknowledges each actuation by its id', async (ack, answer) => {
    const server = await fake();
    const { device: d, events } = device({ url: server.url, ack });
    await d.authenticated();
    const ids = [crypto.randomUUID(), crypto.randomUUID()];
    for (const id of ids) server.peers[0]!.socket.send(actuation(id));
    const received = await eventually(() => server.peers[0]!.received.slice(1), (r) => r.length >= 2);
    expect(received).toEqual(ids.map((id) => ({ type: 'ack', id, ...answer })));
    const reported = events.filter((e) => e.type === 'device:actuation');
    expect(reported.map((e) => e.message.id)).toEqual(ids);
    expect(reported[0]!.message.content).toMatchObject({ type: 'command', content: { command: 'LED.v1.0' } });
    expect(d.stats).toMatchObject({ actuations: 2, acksSent: 2 });
  });

  it('--ack none reports the actuation and sends nothing back', async () => {
    const server = await fake();
    const { device: d, events } = device({ url: server.url, ack: 'none', pingIntervalMs: 100 });
    await d.authenticated();
    server.peers[0]!.socket.send(actuation(crypto.randomUUID()));
    // Wait for a ping surely sent after the actuation was handled (the second one to arrive
    // after that; the first may have been in flight): frames are ordered, so an ack would precede it.
    await eventually(() => events.filter((e) => e.type === 'device:actuation').length, (n) => n === 1);
    const pingsBefore = server.peers[0]!.received.filter((m) => m.type === 'ping').length;
    await eventually(() => server.peers[0]!.received.filter((m) => m.type === 'ping').length, (n) => n >= pingsBefore + 2);
    expect(server.peers[0]!.received.filter((m) => m.type !== 'ping')).toEqual([expect.objectContaining({ type: 'device' })]);
    expect(d.stats.acksSent).toBe(0);
  });

  it('sends {"type":"ping"} every interval once authenticated', async () => {
    const server = await fake();
    const { device: d, events } = device({ url: server.url, pingIntervalMs: 50 });
    await d.authenticated();
    const pings = await eventually(() => server.peers[0]!.received.filter((m) => m.type === 'ping'), (p) => p.length >= 3);
    expect(pings.length).toBeGreaterThanOrEqual(3);
    expect(pings[0]).toEqual({ type: 'ping' });
    expect(events.some((e) => e.type === 'device:pong')).toBe(true);
    expect(server.peers).toHaveLength(1); // answered pings keep the one connection
  });

  it('drops a connection whose pings go unanswered and connects again', async () => {
    const server = await fake({ answerPings: false });
    const { device: d } = device({ url: server.url, pingIntervalMs: 50, backoff: { initialMs: 20, maxMs: 40 } });
    await d.authenticated();
    await eventually(() => server.peers.length, (n) => n >= 2, 5_000);
    expect(server.peers.length).toBeGreaterThanOrEqual(2);
    await eventually(() => server.peers[0]!.closed, Boolean);
    expect(server.peers[0]!.closed).toBe(true);
    // The second connection is counted when it opens; its first message follows.
    const first = await eventually(() => server.peers[1]!.received, (r) => r.length >= 1);
    expect(first[0]).toMatchObject({ type: 'device' });
  });

  it('reconnects with growing, jittered delays while the server is down, and authenticates when it is back', async () => {
    const server = await fake();
    const port = server.port;
    await server.close();
    const tokens: string[] = [];
    const { device: d, events } = device({
      url: `ws://127.0.0.1:${port}/`,
      token: (id) => {
        tokens.push(`${id}:${tokens.length}`);
        return tokens.at(-1)!;
      },
      backoff: { initialMs: 40, maxMs: 400 },
    });
    const delays = () => events.flatMap((e) => (e.type === 'device:disconnected' && e.reconnectInMs !== null ? [e.reconnectInMs] : []));
    await eventually(delays, (x) => x.length >= 4, 5_000);
    const [a, b, c, e] = delays();
    expect(a).toBeGreaterThanOrEqual(20); // step 40: between 20 and 40
    expect(a).toBeLessThanOrEqual(40);
    expect(b).toBeGreaterThanOrEqual(40); // step 80
    expect(c).toBeGreaterThanOrEqual(80); // step 160
    expect(e).toBeGreaterThanOrEqual(160); // step 320
    expect(events.some((ev) => ev.type === 'device:error')).toBe(true); // ECONNREFUSED was reported

    // The server comes back on the same port.
    const back = http.createServer();
    const wss = new WebSocketServer({ server: back, handleProtocols: () => 'echo-protocol' });
    const received: unknown[] = [];
    wss.on('connection', (s) =>
      s.on('message', (m) => {
        received.push(JSON.parse(m.toString()));
        s.send(JSON.stringify({ code: 200, content: 'Subscribed to ws server' }));
      }),
    );
    await new Promise<void>((resolve) => back.listen(port, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => back.close(() => resolve()));
    });
    await d.authenticated();
    // Every attempt minted its own token.
    expect(received).toEqual([{ type: 'device', deviceId: 'sim-1', deviceToken: tokens.at(-1) }]);
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(d.stats.connects).toBe(tokens.length);
  });

  it('stops, without retrying, when the server refuses the token', async () => {
    const server = await fake({ rejectTokens: true });
    const { device: d, events } = device({ url: server.url, backoff: { initialMs: 10, maxMs: 10 } });
    await expect(d.authenticated()).rejects.toThrow(/refused the token/);
    expect(d.state).toBe(STOPPED);
    await new Promise((r) => setTimeout(r, 100)); // ten 10 ms backoffs: a window for a reconnect NOT to happen (absence has no event)
    expect(server.peers).toHaveLength(1);
    expect(events.find((e) => e.type === 'device:rejected')).toMatchObject({ code: 401, content: 'Invalid device token for device' });
    expect(events.at(-1)).toMatchObject({ type: 'device:disconnected', code: 1008, reconnectInMs: null });
  });

  it('stop() closes with 1000 and does not reconnect', async () => {
    const server = await fake();
    const { device: d } = device({ url: server.url, backoff: { initialMs: 10, maxMs: 10 } });
    await d.authenticated();
    const closed = new Promise<number>((resolve) => server.peers[0]!.socket.once('close', (code) => resolve(code)));
    await d.stop();
    expect(await closed).toBe(1000);
    await new Promise((r) => setTimeout(r, 100)); // ten 10 ms backoffs: a window for a reconnect NOT to happen (absence has no event)
    expect(server.peers).toHaveLength(1);
  });
});

describe('a fleet of simulated devices', () => {
  it('runs <id>-1 … <id>-N from one process, each with its own token', async () => {
    const server = await fake();
    const fleet = startDeviceFleet({ url: server.url, deviceIds: numberedDeviceIds('pump', 5), token: (id) => `token-of-${id}`, pingIntervalMs: 0, spreadMs: 50 });
    cleanups.push(() => fleet.stop());
    await fleet.authenticated();
    const auths = server.peers.map((p) => p.received[0]).sort((x, y) => String(x!.deviceId).localeCompare(String(y!.deviceId)));
    expect(auths).toEqual(['pump-1', 'pump-2', 'pump-3', 'pump-4', 'pump-5'].map((id) => ({ type: 'device', deviceId: id, deviceToken: `token-of-${id}` })));
    await fleet.stop();
    expect(fleet.devices.every((d: SimulatedDevice) => d.state === STOPPED)).toBe(true);
  });
});

describe('backoffDelayMs', () => {
  it('doubles the step from initialMs up to maxMs, with the delay between half the step and the step', () => {
    const low = (attempt: number) => backoffDelayMs(attempt, { initialMs: 100, maxMs: 1_000 }, () => 0);
    const high = (attempt: number) => backoffDelayMs(attempt, { initialMs: 100, maxMs: 1_000 }, () => 1);
    expect([0, 1, 2, 3, 4, 10, 1_000].map(low)).toEqual([50, 100, 200, 400, 500, 500, 500]);
    expect([0, 1, 2, 3, 4, 10, 1_000].map(high)).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('spreads devices dropped together', () => {
    const delays = Array.from({ length: 200 }, () => backoffDelayMs(3));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(2_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(4_000);
    expect(new Set(delays).size).toBeGreaterThan(50);
  });
});
