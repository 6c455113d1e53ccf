/**
 * The webhook sender's thread (started by sender-thread.ts, which owns the boundary): the
 * same sender as in process, on a pool and a logger of its own. Its log lines, delivery
 * results and the end of its stop go to the main thread as messages; nudges and the stop
 * come from it.
 */
import os from 'node:os';
import { Writable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { makePool } from '../db/pool.js';
import { makeLogger } from '../logger.js';
import { makeSecretBox } from './secret-box.js';
import { startWebhookSender, type DeliveryResult } from './sender.js';
import type { FromSender, SenderThreadData, ToSender } from './sender-thread.js';

const data = workerData as SenderThreadData;
const port = parentPort!;
const post = (message: FromSender) => port.postMessage(message);

// Lines go to the main thread's destination, so that the log is one stream as before.
const destination = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    post({ type: 'log', line: chunk.toString() });
    callback();
  },
});
const logger = makeLogger({ level: data.logLevel, instanceId: data.instanceId }, destination);
const pool = makePool(data.pool, logger);

// Below the main thread: when the CPU is full, requests and devices go first and the
// webhooks catch up after (their events wait in PostgreSQL). Linux applies a nice value
// set with pid 0 to the calling thread alone; raising it needs no privilege.
if (data.nice > 0) {
  try {
    os.setPriority(data.nice);
  } catch (err) {
    logger.warn({ err }, 'webhooks: could not lower the sender thread\'s priority');
  }
}

// Counted per turn of this thread's loop, not one message per delivery.
let counts: Partial<Record<DeliveryResult, number>> | undefined;
function onResult(result: DeliveryResult): void {
  if (!counts) {
    counts = {};
    setImmediate(flushCounts);
  }
  counts[result] = (counts[result] ?? 0) + 1;
}

function flushCounts(): void {
  if (counts) post({ type: 'results', counts });
  counts = undefined;
}

const sender = startWebhookSender({
  pool,
  logger,
  instanceId: data.instanceId,
  settings: data.settings,
  secrets: makeSecretBox(data.secretKey ? Buffer.from(data.secretKey) : undefined),
  onResult,
});

port.on('message', (message: ToSender) => {
  if (message.type === 'nudge') sender.nudge();
  else if (message.type === 'stop') void stop();
});

async function stop(): Promise<void> {
  try {
    await sender.stop();
  } finally {
    await pool.end().catch((err: unknown) => logger.warn({ err }, 'webhooks: ending the sender pool failed'));
    flushCounts();
    post({ type: 'stopped' });
  }
}
