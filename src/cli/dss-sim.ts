/**
 * `npm run dss-sim -- --key KEY [--key KEY2] [--port 7070] [--heartbeat 30] [--events file.jsonl] [--interval 1000]`
 *
 * Starts the DSS simulator. Events from `--events` (one JSON object a line,
 * compact like `{"type":"datapoint","dsn":"AC01","property":"Blue_LED","baseType":"boolean","value":1}`
 * or in DSS shape; an optional `streamKey` picks the key, else the first) are sent
 * `--interval` ms apart once the first subscriber of their key connected. More can
 * be posted to `POST /streams/KEY/events` at any time.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { makeLogger } from '../logger.js';
import type { EventInput } from '../dss/simulator/event-builders.js';
import { startDssSimulator } from '../dss/simulator/simulator.js';

const { values } = parseArgs({
  options: {
    key: { type: 'string', multiple: true },
    port: { type: 'string', default: '7070' },
    host: { type: 'string', default: '127.0.0.1' },
    heartbeat: { type: 'string', default: '30' },
    events: { type: 'string' },
    interval: { type: 'string', default: '1000' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help || !values.key?.length) {
  process.stdout.write('usage: npm run dss-sim -- --key KEY [--key KEY2] [--port 7070] [--host 127.0.0.1] [--heartbeat 30] [--events file.jsonl] [--interval 1000]\n');
  process.exit(values.help ? 0 : 64);
}

const logger = makeLogger({ level: 'info' });
const keys = values.key;
const heartbeatSeconds = Number(values.heartbeat);
if (!(heartbeatSeconds > 0)) throw new Error('--heartbeat must be a positive number of seconds');

const fileEvents = new Map<string, EventInput[]>();
if (values.events) {
  const lines = fs.readFileSync(values.events, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.trim().startsWith('#')) return;
    let parsed: EventInput & { streamKey?: string };
    try {
      parsed = JSON.parse(line) as EventInput & { streamKey?: string };
    } catch (err) {
      throw new Error(`${values.events}:${i + 1}: ${(err as Error).message}`, { cause: err });
    }
    const { streamKey = keys[0]!, ...event } = parsed;
    fileEvents.set(streamKey, [...(fileEvents.get(streamKey) ?? []), event as EventInput]);
  });
}

const simulator = await startDssSimulator({ port: Number(values.port), host: values.host, streamKeys: keys, heartbeatMs: heartbeatSeconds * 1000, logger });
logger.info({ streamUrl: simulator.streamUrl, httpUrl: simulator.httpUrl, keys: keys.length, fileEvents: [...fileEvents.values()].flat().length }, 'dss-sim: listening');

// Play each key's file events once it has a subscriber.
const interval = Number(values.interval);
const player = setInterval(() => {
  const connected = new Set(simulator.stats().connections.map((c) => c.streamKey));
  for (const [key, queue] of fileEvents) {
    if (!connected.has(key)) continue;
    const next = queue.shift();
    if (next) simulator.emit(key, next);
    if (queue.length === 0) fileEvents.delete(key);
  }
}, interval);

const shutdown = () => {
  clearInterval(player);
  void simulator.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
