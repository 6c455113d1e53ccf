/**
 * The webhook sender across its thread boundary (`WEBHOOK_SENDER_THREAD`): both ways it
 * delivers and counts in the main thread's registry, its log lines reach the server's log,
 * and a thread that dies is logged and started again.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually, within } from '../helpers/eventually.js';
import { appendEvents } from '../helpers/feed-events.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer } from '../helpers/server.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { makeLogger } from '../../src/logger.js';
import { startWebhookSenderThread } from '../../src/webhooks/sender-thread.js';
import type { WebhookSettings } from '../../src/webhooks/sender.js';

const ENV = { DSS_ENABLED: 'false', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_MIN_MS: '50', WEBHOOK_RETRY_MAX_MS: '200', LOG_LEVEL: 'info' };

let db: TestDatabase;
let receiver: WebhookReceiver;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await receiver?.close();
  await db?.drop();
});

const acked = (deviceId: string) => ({ type: 'actuation.acked', deviceId, data: { id: crypto.randomUUID(), deviceId, status: 'acked' } });

describe.each(['true', 'false'])('WEBHOOK_SENDER_THREAD=%s', (thread) => {
  it('delivers in order, counts in the server registry and logs to the server log', async () => {
    let calls = 0;
    // The first answer fails, so that the sender logs a retry.
    receiver = await startWebhookReceiver(() => (calls++ === 0 ? 500 : 200));
    const log = captureLog();
    const server = await startTestServer(db, { ...ENV, WEBHOOK_SENDER_THREAD: thread }, { logDestination: log.sink });
    try {
      const res = await server.api('/v1/webhooks', { method: 'POST', json: { url: receiver.url, events: ['actuation.acked'], secret: 'whsec-thread-0123456789' } });
      expect(res.status).toBe(201);
      const { id } = (await res.json()) as { id: string };
      const ids = await appendEvents(db.pool, [acked('t-1'), acked('t-2'), acked('t-3')]);
      await eventually(() => receiver.ids(), (got) => got.length >= 4);
      expect(receiver.ids()).toEqual([ids[0], ...ids]);
      const metrics = await eventually(
        async () => (await server.api('/metrics')).text(),
        (text) => /iotws_webhook_deliveries_total\{result="delivered"\} 3\b/.test(text),
      );
      expect(metrics).toMatch(/iotws_webhook_deliveries_total\{result="retried"\} 1\b/);
      const retried = log.json().find((l) => l.msg === 'webhooks: delivery retried');
      expect(retried).toMatchObject({ component: 'webhooks', instanceId: server.config.instanceId, eventId: ids[0], statusCode: 500 });
      // The next case's events are not for this one.
      expect((await server.api(`/v1/webhooks/${id}`, { method: 'DELETE' })).status).toBe(204);
    } finally {
      await server.close();
      await receiver.close();
    }
  });
});

/** A sender thread in this process, its log captured. */
function startThread(options: { nice: number; settings: WebhookSettings }) {
  const log = captureLog();
  const logger = makeLogger({ level: 'info', instanceId: 'thread-test' }, log.sink);
  const sender = startWebhookSenderThread({
    logger,
    writeLog: (line) => log.sink.write(line),
    pool: { connectionString: db.url, max: 1 },
    logLevel: 'info',
    instanceId: 'thread-test',
    secretKey: undefined,
    ...options,
  });
  return { log, sender };
}

it('a sender thread that dies is logged and started again, later each time it keeps dying; stop() ends it between restarts', async () => {
  // Settings it cannot start with: the thread throws as it starts, every time. (Without the restart this fails: checked.)
  const { log, sender } = startThread({ nice: 0, settings: undefined as unknown as WebhookSettings });
  try {
    const ended = await eventually(
      () => log.json().filter((l) => /^webhooks: the sender thread ended; starting it again in \d+ ms$/.test(String(l.msg))).map((l) => String(l.msg)),
      (msgs) => msgs.length >= 2,
      15_000,
    );
    // It keeps dying at once, so each restart waits twice as long as the one before.
    expect(ended.slice(0, 2)).toEqual(['webhooks: the sender thread ended; starting it again in 1000 ms', 'webhooks: the sender thread ended; starting it again in 2000 ms']);
    const failed = log.json().filter((l) => l.msg === 'webhooks: the sender thread failed');
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed[0]).toMatchObject({ level: 50, component: 'webhooks', err: { type: 'TypeError' } });
  } finally {
    await within('the stop of a sender thread that keeps dying', sender.stop(), 5_000);
  }
});

/** The nice value of each thread of this process (Linux: /proc/self/task/<tid>/stat, field 19). */
function threadNiceValues(): number[] {
  return fs.readdirSync('/proc/self/task').map((tid) => Number(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]));
}

it.runIf(process.platform === 'linux')('runs below the main thread: the sender thread alone takes WEBHOOK_SENDER_NICE', async () => {
  expect(threadNiceValues()).not.toContain(7);
  const { sender } = startThread({
    nice: 7,
    settings: { timeoutMs: 10_000, maxAgeMs: 60_000, retryMinMs: 50, retryMaxMs: 200, maxConcurrency: 1, allowPrivate: true, pollIntervalMs: 1_000, retentionDays: 0, databaseTimeoutMs: 5_000, gatherMs: 20 },
  });
  try {
    const nice = await eventually(threadNiceValues, (values) => values.includes(7), 15_000);
    // One thread (the sender's), not the process: the main thread keeps its own value.
    expect(nice.filter((n) => n === 7)).toHaveLength(1);
    expect(nice[0]).not.toBe(7);
  } finally {
    await within('the stop of the sender thread', sender.stop(), 10_000);
  }
});
