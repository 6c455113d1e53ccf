/**
 * Simulated devices (bench/device-client.ts children) as the actuations and dss
 * benches use them: connect and authenticate them all, count what they receive,
 * and wait (bounded) until what was sent has arrived.
 */
import type { ChildProcess } from 'node:child_process';
import type { Receipts } from '../device-client.js';
import { request } from './ipc.js';
import { sleep } from './processes.js';

/** Connects every client's devices to the server on `port`; throws if any device failed. */
export async function connectDevices(children: ChildProcess[], port: number): Promise<number> {
  const results = await Promise.all(
    children.map((child) =>
      request(child, { op: 'connect', port, set: 'devices', concurrency: 64, perDeviceTimeoutMs: 30_000, deadlineMs: 90_000 }, 'connected', 150_000),
    ),
  );
  const failed = results.reduce((n, r) => n + r.failed, 0);
  if (failed > 0) throw new Error(`${failed} device(s) could not connect: ${JSON.stringify(results.map((r) => r.errors))}`);
  return results.reduce((n, r) => n + r.ok, 0);
}

export async function resetDevices(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((child) => request(child, { op: 'reset' }, 'reset', 30_000).catch(() => undefined)));
}

/** Resets the receipt counters; from now on actuations are counted (and acked when `ack`). */
export async function listen(children: ChildProcess[], ack: boolean, keepLatencies: boolean, holdAcks = false): Promise<void> {
  await Promise.all(children.map((child) => request(child, { op: 'listen', ack, keepLatencies, holdAcks }, 'listening', 30_000)));
}

/** Acks, at once, every actuation the devices held back since `listen(…, holdAcks)`; returns how many. */
export async function ackHeld(children: ChildProcess[]): Promise<number> {
  const replies = await Promise.all(children.map((child) => request(child, { op: 'ackHeld' }, 'ackedHeld', 60_000)));
  return replies.reduce((n, r) => n + r.acks, 0);
}

export async function receipts(children: ChildProcess[], latencies = false): Promise<Receipts> {
  const all = await Promise.all(children.map((child) => request(child, { op: 'received', latencies }, 'received', 60_000)));
  return {
    count: all.reduce((n, r) => n + r.count, 0),
    other: all.reduce((n, r) => n + r.other, 0),
    firstMs: Math.min(...all.map((r) => r.firstMs).filter(Number.isFinite)),
    lastMs: Math.max(...all.map((r) => r.lastMs).filter(Number.isFinite)),
    latencies: all.flatMap((r) => r.latencies),
    ids: all.flatMap((r) => r.ids ?? []),
  };
}

/**
 * Polls the devices until `expected` actuations arrived, nothing more arrived for
 * `quietMs`, or `timeoutMs` passed; returns what arrived.
 */
export async function waitForReceipts(
  children: ChildProcess[],
  expected: number,
  options: { quietMs?: number; timeoutMs?: number; latencies?: boolean } = {},
): Promise<Receipts> {
  const quietMs = options.quietMs ?? 5_000;
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  let lastCount = -1;
  let lastChange = Date.now();
  for (;;) {
    const r = await receipts(children);
    if (r.count >= expected || Date.now() > deadline) return options.latencies ? receipts(children, true) : r;
    if (r.count !== lastCount) {
      lastCount = r.count;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > quietMs) {
      return options.latencies ? receipts(children, true) : r;
    }
    await sleep(100);
  }
}
