/**
 * The webhook sender in a worker thread of its own (`WEBHOOK_SENDER_THREAD`): its round
 * trips (database, receiver) then wait only for its own loop, not behind the HTTP and
 * device work of the main thread. This file owns the thread boundary; sender-worker.ts is
 * the thread's side of it, running the same sender (sender.ts) as in process.
 *
 * What crosses it: nudges and the stop (main → thread); log lines, delivery results and
 * the end of the stop (thread → main). A thread that dies is logged at error and started
 * again, RESTART_MS later, doubling while it keeps dying soon after its start (up to
 * MAX_RESTART_MS: a thread that cannot start does not spin): the durable state is in PostgreSQL, so the new sender claims
 * the endpoints when their leases run out and goes on from their cursors (what was in
 * flight, and outcomes not yet recorded, are sent again, as after a SIGKILL).
 */
import { Worker } from 'node:worker_threads';
import type { PoolOptions } from '../db/pool.js';
import type { Logger } from '../logger.js';
import type { LogLevel } from '../config/config.js';
import type { DeliveryResult, WebhookSender, WebhookSettings } from './sender.js';

/** What the thread is started with (structured-cloned). */
export interface SenderThreadData {
  pool: PoolOptions;
  logLevel: LogLevel;
  /** The thread's nice value (`WEBHOOK_SENDER_NICE`). */
  nice: number;
  instanceId: string;
  settings: WebhookSettings;
  secretKey: Uint8Array | undefined;
}

export type ToSender = { type: 'nudge' } | { type: 'stop' };
export type FromSender = { type: 'log'; line: string } | { type: 'results'; counts: Partial<Record<DeliveryResult, number>> } | { type: 'stopped' };

export interface SenderThreadOptions extends SenderThreadData {
  logger: Logger;
  /** Where the thread's log lines are written: the main logger's destination. */
  writeLog(line: string): void;
  onResult?(result: DeliveryResult, count: number): void;
}

const RESTART_MS = 1_000;
const MAX_RESTART_MS = 30_000;
/** A thread that ran this long before it ended is restarted after RESTART_MS again. */
const STABLE_MS = 60_000;

/**
 * The thread from the built file; run from TypeScript (tests, `tsx`), through tsx's loader,
 * registered inside the thread (a worker does not take `--import` from its execArgv on Node 20).
 */
function makeWorker(workerData: SenderThreadData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./sender-worker.js', import.meta.url), { workerData });
  const entry = new URL('./sender-worker.ts', import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`, { eval: true, workerData });
}

export function startWebhookSenderThread(options: SenderThreadOptions): WebhookSender {
  const log = options.logger.child({ component: 'webhooks' });
  const data: SenderThreadData = { pool: options.pool, logLevel: options.logLevel, nice: options.nice, instanceId: options.instanceId, settings: options.settings, secretKey: options.secretKey };
  let worker: Worker | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;
  let stopped: (() => void) | undefined;
  let restartMs = RESTART_MS;

  function start(): void {
    const startedAt = Date.now();
    const started = makeWorker(data);
    worker = started;
    started.on('message', (message: FromSender) => {
      if (message.type === 'log') options.writeLog(message.line);
      else if (message.type === 'results') for (const [result, count] of Object.entries(message.counts)) options.onResult?.(result as DeliveryResult, count);
      else if (message.type === 'stopped') void started.terminate();
    });
    started.on('error', (err) => log.error({ err }, 'webhooks: the sender thread failed'));
    started.on('exit', (code) => {
      worker = undefined;
      if (stopping) return stopped?.();
      if (Date.now() - startedAt >= STABLE_MS) restartMs = RESTART_MS;
      log.error({ exitCode: code }, `webhooks: the sender thread ended; starting it again in ${restartMs} ms`);
      restartTimer = setTimeout(start, restartMs);
      restartMs = Math.min(restartMs * 2, MAX_RESTART_MS);
    });
  }

  start();
  return {
    nudge: () => worker?.postMessage({ type: 'nudge' } satisfies ToSender),
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        clearTimeout(restartTimer);
        if (!worker) return resolve();
        stopped = resolve;
        worker.postMessage({ type: 'stop' } satisfies ToSender);
      });
      return stopping;
    },
  };
}
