/** The DSS simulator's own contract, with a plain `ws` client: keys, frames, replay range, heartbeats. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseFrames, type Frame } from '../../src/dss/frame-parser.js';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';

const KEY = 'sim0123456789abcdef';
let sim: DssSimulator;

beforeAll(async () => {
  sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 200 });
});
afterAll(async () => {
  await sim?.close();
});

function rawEventOf(frame: Frame | undefined): Record<string, any> {
  if (frame?.kind !== 'event') throw new Error(`not an event frame: ${JSON.stringify(frame)}`);
  return frame.rawEvent;
}

function open(query: string) {
  const ws = new WebSocket(`${sim.streamUrl}?${query}`);
  const messages: string[] = [];
  ws.on('message', (data) => messages.push(String(data)));
  const closed = new Promise<{ code: number }>((resolve) => ws.on('close', (code) => resolve({ code })));
  ws.on('error', () => undefined);
  return { ws, messages, closed, opened: new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('unexpected-response', (_req, res) => reject(new Error(String(res.statusCode)))))) };
}

describe('DSS simulator', () => {
  it('refuses an unknown stream key with 401', async () => {
    await expect(open('stream_key=nope').opened).rejects.toThrow('401');
    await expect(open('').opened).rejects.toThrow('401');
  });

  it('emits all five event types in the LEN|json frame format (LEN in UTF-8 bytes) and keeps them in its log', async () => {
    const res = await fetch(`${sim.httpUrl}/streams/${KEY}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([
        { type: 'connectivity', dsn: 'D1', status: 'Online' },
        { type: 'datapoint', dsn: 'D1', property: 'name', baseType: 'string', value: 'Küche|1' },
        { type: 'datapointack', dsn: 'D1', property: 'name', baseType: 'string', value: 'x' },
        { type: 'location', dsn: 'D1' },
        { type: 'registration', dsn: 'D1', registered: false },
      ]),
    });
    expect(await res.json()).toEqual({ seqs: [1, 2, 3, 4, 5] });
    const c = open(`stream_key=${KEY}&seq_start=1`);
    await c.opened;
    await new Promise((r) => setTimeout(r, 100));
    const frames = c.messages.filter((m) => m !== '1|Z');
    expect(frames).toHaveLength(5);
    for (const frame of frames) {
      const [len, json] = [frame.slice(0, frame.indexOf('|')), frame.slice(frame.indexOf('|') + 1)];
      expect(Number(len)).toBe(Buffer.byteLength(json));
    }
    const types = frames.flatMap((f) => parseFrames(f)).map((f) => rawEventOf(f).metadata.event_type);
    expect(types).toEqual(['connectivity', 'datapoint', 'datapointack', 'location', 'registration']);
    expect(sim.events(KEY)).toHaveLength(5);
    c.ws.close();
  });

  it('honours seq_start and seq_end, then closes normally', async () => {
    const c = open(`stream_key=${KEY}&seq_start=2&seq_end=3`);
    expect((await c.closed).code).toBe(1000);
    expect(c.messages.filter((m) => m !== '1|Z').map((m) => rawEventOf(parseFrames(m)[0]).seq)).toEqual(['2', '3']);
  });

  it('sends 1|Z heartbeats and closes a socket that does not answer Z', async () => {
    const before = sim.stats().closedForMissedHeartbeat;
    const silent = open(`stream_key=${KEY}`);
    const answering = open(`stream_key=${KEY}`);
    answering.ws.on('message', (data) => String(data) === '1|Z' && answering.ws.send('Z'));
    expect((await silent.closed).code).toBe(4000);
    expect(silent.messages).toContain('1|Z');
    expect(sim.stats().closedForMissedHeartbeat).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(answering.ws.readyState).toBe(WebSocket.OPEN);
    answering.ws.close();
  });
});
