/**
 * The event source of the dss bench: a child process (IPC channel only) running
 * the project's DSS simulator (src/dss/simulator/) on 127.0.0.1 and feeding it
 * datapoint events itself, so no HTTP posting sits between the schedule and the
 * stream.
 *
 *   {op:'start', streamKey}                -> {op:'started', streamUrl}
 *   {op:'emit', ...Feed}                   -> {op:'emitted', sent, firstMs, lastMs}
 *   {op:'subscribers'}                     -> {op:'subscribers', open}
 *
 * Each event is `{type:'datapoint', dsn, property:'bench', baseType:'string', value}`
 * with value = its scheduled time in ms (performance.timeOrigin + performance.now()),
 * as a string; the bench's rule copies it into the actuation's `t` param.
 * - open: `total` events at `rate`/s on a fixed schedule (ticks of ~1 ms);
 * - burst: `total` events in chunks of `chunk` every `everyMs` (offered faster than
 *   the server takes them: the stream's back-pressure decides the pace).
 * dsns are used round-robin. Bounded by `total` and `deadlineMs`.
 */
import { performance } from 'node:perf_hooks';
import { startDssSimulator, type DssSimulator } from '../src/dss/simulator/simulator.js';
import { exitWithParent } from './lib/ipc.js';

export interface Feed {
  streamKey: string;
  dsns: string[];
  total: number;
  mode: { kind: 'open'; rate: number } | { kind: 'burst'; chunk: number; everyMs: number };
  deadlineMs: number;
}

export type FeederRequest = { op: 'start'; streamKey: string } | ({ op: 'emit' } & Feed) | { op: 'subscribers' };
export type FeederReply =
  | { op: 'started'; streamUrl: string }
  | { op: 'emitted'; sent: number; firstMs: number; lastMs: number }
  | { op: 'subscribers'; open: number }
  | { op: 'error'; message: string };

const now = () => performance.timeOrigin + performance.now();
let simulator: DssSimulator | undefined;

async function emit(feed: Feed): Promise<{ sent: number; firstMs: number; lastMs: number }> {
  if (!simulator) throw new Error('not started');
  const deadline = Date.now() + feed.deadlineMs;
  let sent = 0;
  let firstMs = Number.NaN;
  let lastMs = Number.NaN;
  const event = (t: number) => ({
    type: 'datapoint' as const,
    dsn: feed.dsns[sent % feed.dsns.length]!,
    property: 'bench',
    baseType: 'string',
    value: String(t),
  });
  const batch = (times: number[]) => {
    if (times.length === 0) return;
    const events = times.map((t) => {
      const e = event(t);
      sent++;
      return e;
    });
    simulator!.emit(feed.streamKey, events);
    if (Number.isNaN(firstMs)) firstMs = times[0]!;
    lastMs = now();
  };
  if (feed.mode.kind === 'open') {
    const intervalMs = 1000 / feed.mode.rate;
    const start = now() + 5;
    while (sent < feed.total && Date.now() < deadline) {
      const due = Math.min(feed.total, Math.floor((now() - start) / intervalMs) + 1);
      const times: number[] = [];
      for (let i = sent; i < due; i++) times.push(start + i * intervalMs);
      batch(times);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } else {
    while (sent < feed.total && Date.now() < deadline) {
      const t = now();
      batch(Array.from({ length: Math.min(feed.mode.chunk, feed.total - sent) }, () => t));
      await new Promise((resolve) => setTimeout(resolve, (feed.mode as { everyMs: number }).everyMs));
    }
  }
  return { sent, firstMs, lastMs };
}

function reply(message: FeederReply): void {
  process.send?.(message);
}

process.on('message', (request: FeederRequest) => {
  void (async () => {
    try {
      switch (request.op) {
        case 'start':
          if (simulator) simulator.addStreamKey(request.streamKey);
          else simulator = await startDssSimulator({ host: '127.0.0.1', port: 0, streamKeys: [request.streamKey] });
          return reply({ op: 'started', streamUrl: simulator.streamUrl });
        case 'emit':
          return reply({ op: 'emitted', ...(await emit(request)) });
        case 'subscribers':
          return reply({ op: 'subscribers', open: simulator?.stats().connectionsOpen ?? 0 });
      }
    } catch (err) {
      reply({ op: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});

exitWithParent();
