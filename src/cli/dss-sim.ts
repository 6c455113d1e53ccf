#!/usr/bin/env node
/**
 * `npm run dss-sim -- --key KEY [--key KEY2] [--port 7070] [--heartbeat 30] [--events file.jsonl] [--interval 1000]`
 *
 * Starts the DSS simulator. Events from `--events` (one JSON object a line,
 * compact like `{"type":"datapoint","dsn":"AC01","property":"Blue_LED","baseType":"boolean","value":1}`
 * or in DSS shape; an optional `streamKey` picks the key, else the first) are sent
 * `--interval` ms apart once the first subscriber of their key connected. More can
 * be posted to `POST /streams/KEY/events` at any time.
 * Exit codes: 0 after Ctrl-C/SIGTERM; 1 could not listen (port taken); 64 bad arguments or --events file.
 */
import { z } from 'zod';
import { makeLogger } from '../logger.js';
import { buildEvent, type EventInput } from '../dss/simulator/event-builders.js';
import { startDssSimulator } from '../dss/simulator/simulator.js';
import { numberOption, parseCli, readNamedFile } from './args.js';

const usage = 'usage: npm run dss-sim -- --key <32 hex> [--key KEY2 …] [--port 7070] [--host 127.0.0.1] [--heartbeat <seconds>] [--events file.jsonl] [--interval <ms>]';

const cli = parseCli(usage, {
  key: { type: 'string', multiple: true },
  port: { type: 'string', default: '7070' },
  host: { type: 'string', default: '127.0.0.1' },
  heartbeat: { type: 'string', default: '30' },
  events: { type: 'string' },
  interval: { type: 'string', default: '1000' },
});
const values = cli.values as { key?: string[]; port: string; host: string; heartbeat: string; events?: string; interval: string };
if (cli.positionals.length > 0) cli.fail(`unexpected argument "${cli.positionals[0]}"`);
if (!values.key?.length) cli.fail('give at least one --key');
const keys = values.key!;
const port = numberOption(cli, 'port', values.port, { min: 0, integer: true, what: 'a port number (0-65535)' });
if (port > 65535) cli.fail(`--port must be a port number (0-65535), got "${values.port}"`);
const heartbeatSeconds = numberOption(cli, 'heartbeat', values.heartbeat, { above: 0, what: 'a positive number of seconds' });
const interval = numberOption(cli, 'interval', values.interval, { min: 0, what: 'a number of milliseconds' });

const fileEvents = new Map<string, EventInput[]>();
if (values.events) {
  const lines = readNamedFile(cli, '--events file', values.events).split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.trim().startsWith('#')) return;
    let parsed: EventInput & { streamKey?: string };
    try {
      parsed = JSON.parse(line) as EventInput & { streamKey?: string };
    } catch (err) {
      return cli.fail(`${values.events}:${i + 1}: not JSON (${(err as Error).message})`);
    }
    try {
      buildEvent(parsed); // checked now, not when it is played
    } catch (err) {
      // A ZodError's message is its issues as JSON over many lines: say them in one.
      const why = err instanceof z.ZodError ? z.prettifyError(err).replace(/\s*\n\s*/g, ' ') : (err as Error).message.split('\n')[0];
      cli.fail(`${values.events}:${i + 1}: not an event the simulator knows (${why})`);
    }
    const { streamKey = keys[0]!, ...event } = parsed;
    if (!keys.includes(streamKey)) cli.fail(`${values.events}:${i + 1}: streamKey "${streamKey}" is not one of the --key values`);
    fileEvents.set(streamKey, [...(fileEvents.get(streamKey) ?? []), event as EventInput]);
  });
}

const logger = makeLogger({ level: 'info' });
const simulator = await startDssSimulator({ port, host: values.host, streamKeys: keys, heartbeatMs: heartbeatSeconds * 1000, logger }).catch((err: Error) => {
  process.stderr.write(`dss-sim: could not listen on ${values.host}:${port}: ${err.message}\n`);
  process.exit(1);
});
logger.info({ streamUrl: simulator.streamUrl, httpUrl: simulator.httpUrl, keys: keys.length, fileEvents: [...fileEvents.values()].flat().length }, 'dss-sim: listening');

// Play each key's file events once it has a subscriber.
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
