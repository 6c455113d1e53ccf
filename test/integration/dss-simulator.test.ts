/** The DSS simulator's own contract, with a plain `ws` client: keys, frames, replay range, heartbeats. */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseFrames, type Frame } from '../../src/dss/frame-parser.js';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { eventually } from '../helpers/eventually.js';

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
    const frames = await eventually(() => c.messages.filter((m) => m !== '1|Z'), (f) => f.length >= 5);
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
    await new Promise((r) => setTimeout(r, 500)); // a window to see the answering socket is NOT closed (absence has no event)
    expect(answering.ws.readyState).toBe(WebSocket.OPEN);
    answering.ws.close();
  });

  it('runs as `npm run dss-sim` and plays a JSON-lines file to the first subscriber', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dss-sim-'));
    const file = path.join(dir, 'events.jsonl');
    await fs.writeFile(
      file,
      [
        '# comment lines and blank lines are skipped',
        JSON.stringify({ type: 'datapoint', dsn: 'F1', property: 'Blue_LED', baseType: 'boolean', value: 1 }),
        '',
        JSON.stringify({ type: 'connectivity', dsn: 'F1', status: 'Offline' }),
      ].join('\n'),
    );
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/dss-sim.ts', '--key', KEY, '--port', '0', '--heartbeat', '1', '--events', file, '--interval', '50'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const streamUrl = await new Promise<string>((resolve, reject) => {
        readline.createInterface({ input: child.stdout! }).on('line', (line) => {
          const parsed = JSON.parse(line) as { msg?: string; streamUrl?: string };
          if (parsed.msg === 'dss-sim: listening') resolve(parsed.streamUrl!);
        });
        child.once('exit', (code) => reject(new Error(`dss-sim exited with ${code}`)));
      });
      const ws = new WebSocket(`${streamUrl}?stream_key=${KEY}`);
      const events: Record<string, any>[] = [];
      ws.on('message', (data) => {
        for (const frame of parseFrames(String(data))) if (frame.kind === 'event') events.push(frame.rawEvent);
      });
      await eventually(() => events.length, (n) => n >= 2);
      expect(events.map((e) => [e.seq, e.metadata.event_type])).toEqual([
        ['1', 'datapoint'],
        ['2', 'connectivity'],
      ]);
      ws.close();
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
