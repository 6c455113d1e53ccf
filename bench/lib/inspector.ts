/**
 * CPU profile of one phase of a server process through its inspector (started
 * with --inspect=127.0.0.1:0): Profiler.start before the phase, Profiler.stop
 * after, so start-up, warm-up and shutdown do not blur what the phase costs.
 */
import WebSocket from 'ws';

export interface PhaseProfiler {
  start(): Promise<void>;
  /** Stops profiling and returns the .cpuprofile JSON text. */
  stop(): Promise<string>;
  close(): void;
}

export async function attachProfiler(inspectorUrl: string): Promise<PhaseProfiler> {
  const socket = new WebSocket(inspectorUrl);
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = message.id === undefined ? undefined : waiting.get(message.id);
    if (!waiter) return;
    waiting.delete(message.id!);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
  });
  const call = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`inspector: ${method} timed out`)), 60_000);
      waiting.set(id, {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 500 });
  return {
    async start() {
      await call('Profiler.start');
    },
    async stop() {
      const result = (await call('Profiler.stop')) as { profile: unknown };
      return JSON.stringify(result.profile);
    },
    close() {
      socket.terminate();
    },
  };
}
