/**
 * Sends each webhook endpoint its events, in event order, at least once; shared by
 * every instance through the database.
 *
 * Modes of one endpoint, as this instance sees it:
 * - UNHELD: any instance may claim it (`claimWebhooks`: enabled, events past its
 *   cursor, not in backoff, no live lease). A tick claims as many as this instance has
 *   free slots (`maxConcurrency`: one request in flight per held endpoint, so that many
 *   deliveries at most).
 * - HELD: `drain` loops: renew the lease and re-read the endpoint, read the next
 *   matching events (up to BATCH), and for each in turn POST it (a kept-alive connection
 *   per held endpoint, its URL parsed and its secret opened once) and go on, renewing
 *   again (and so applying a PATCH) once `databaseTimeoutMs` has passed. One request is in
 *   flight at a time (order). A 2xx is handed to the endpoint's outcome recorder
 *   (outcome-recorder.ts), which records it and moves the cursor off the send path, with
 *   the others that arrived meanwhile, in one statement conditional on the lease; the next
 *   event is sent without waiting for it, unless UNRECORDED_MAX outcomes are unrecorded.
 *   Caught up (a batch shorter than BATCH, its scan short of SCAN_WINDOW), the next search
 *   waits until `gatherMs` after the last one started, and the recorder gathers outcomes as
 *   long: a statement per batch of events, not two or three per event, for at most
 *   `gatherMs` more latency.
 *   Any other outcome is recorded at once (`recordAttempt`) after those: a failure past
 *   the event's max age moves the cursor on and the loop goes on. With nothing left to send
 *   it waits up to LINGER_MS for a nudge, then records what is left and lets go.
 * - BACKOFF: any other answer, a timeout or a connection error sets `not_before` and
 *   lets go of the lease; whoever claims the endpoint after that retries the same head
 *   event (head-of-line: nothing after it is sent first). A 410 Gone disables it.
 * Ticks run on a nudge (an `iotws_events` NOTIFY, a new or changed webhook, a drain
 * ending, a retry falling due) and every `pollIntervalMs` (missed NOTIFYs, other
 * instances' retries and leases that ran out).
 *
 * Nothing lost: the cursor moves only in the statements that record outcomes, after the
 * receiver answered. Duplicates are bounded: an instance killed (SIGKILL) never records
 * the request in flight, nor the 2xx outcomes not yet recorded (at most UNRECORDED_MAX − 1
 * besides it; none once the recorder caught up, as while a receiver hangs), and the next
 * holder (after the lease runs out) sends those events again, in order.
 */
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { backoffDelayMs } from '../simulator/backoff.js';
import { boundedPost, makeConnection, type Connection, type PostOptions, type PostResult } from './bounded-post.js';
import * as sql from './delivery-sql.js';
import { makeOutcomeRecorder, type OutcomeRecorder } from './outcome-recorder.js';
import { SecretUnavailableError, type SecretBox } from './secret-box.js';
import { signatureHeader } from './signature.js';

export interface WebhookSettings {
  /** Bound on one request, connect to last body byte (`WEBHOOK_TIMEOUT_MS`). */
  timeoutMs: number;
  /** An event not delivered this long after it happened is marked failed (`WEBHOOK_MAX_AGE_HOURS`). */
  maxAgeMs: number;
  retryMinMs: number;
  retryMaxMs: number;
  allowPrivate: boolean;
  /** Endpoints this instance sends to at once, one request each (`WEBHOOK_MAX_CONCURRENCY`). */
  maxConcurrency: number;
  pollIntervalMs: number;
  /** Settled deliveries older than this go (`RETENTION_DAYS`); 0 keeps them. */
  retentionDays: number;
  /** Bound on each database statement (`DATABASE_TIMEOUT_MS`): the lease is a request plus three of them. */
  databaseTimeoutMs: number;
  /** A caught-up endpoint's next search, and its outcomes' record, wait this long to take more than one event each (`WEBHOOK_GATHER_MS`). */
  gatherMs: number;
}

/** A held endpoint as sending needs it: its URL parsed and its secret opened once, not per event. */
interface Target {
  /** As stored: a PATCH that changes either makes a new target. */
  storedUrl: string;
  storedSecret: string;
  url: URL;
  /** Or why it does not open (every attempt then fails with it). */
  secret: string | SecretUnavailableError;
  connection: Connection;
}

export type DeliveryResult = 'delivered' | 'retried' | 'failed' | 'gone';

export interface WebhookSender {
  nudge(): void;
  /** Stops claiming, aborts requests in flight (not recorded: the next holder sends them again) and lets go of every lease. */
  stop(): Promise<void>;
}

export interface WebhookSenderOptions {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  settings: WebhookSettings;
  secrets: SecretBox;
  onResult?(result: DeliveryResult): void;
}

const PRUNE_EVERY_MS = 10 * 60_000;
/** Events read per query while an endpoint is held: sent one at a time, in order. */
const BATCH = 100;
/** A held endpoint with nothing to send is kept this long for new events before its lease is let go. */
const LINGER_MS = 1_000;
const PRUNE_BATCH = 5_000;

export function eventBody(event: { id: number; type: string; at: Date; data: unknown }): string {
  return JSON.stringify({ id: event.id, type: event.type, at: event.at.toISOString(), data: event.data });
}

/** Signs and POSTs one event body. */
export function postEvent(
  settings: Pick<WebhookSettings, 'timeoutMs' | 'allowPrivate'>,
  target: { url: string | URL; secret: string },
  eventId: number,
  body: string,
  attempt: number,
  connection: Pick<PostOptions, 'connection'> = {},
): Promise<PostResult> {
  return boundedPost({
    url: target.url,
    body,
    timeoutMs: settings.timeoutMs,
    allowPrivate: settings.allowPrivate,
    headers: {
      'x-iotws-event-id': String(eventId),
      'x-iotws-signature': signatureHeader(target.secret, body, Math.floor(Date.now() / 1000)),
      'x-iotws-delivery-attempt': String(attempt),
    },
    ...connection,
  });
}

export function startWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const { pool, instanceId, settings } = options;
  const log = options.logger.child({ component: 'webhooks' });
  // Renewed at most `databaseTimeoutMs` before each attempt starts, it covers the request and
  // the statements recording its outcome: the recorder's statement in flight, then its own
  // (each statement's pool checkout and query bounded by `databaseTimeoutMs`). A sender
  // slower than that loses the lease: another instance may then send the same events again
  // (duplicates), but this one's outcomes are not recorded.
  const leaseMs = settings.timeoutMs + 3 * settings.databaseTimeoutMs;
  const held = new Map<string, Promise<void>>();
  const aborter = new AbortController();
  const retryTimers = new Set<NodeJS.Timeout>();
  /** Held endpoints with nothing to send, waiting for a nudge. */
  const idleWaiters = new Set<() => void>();
  let ticking: Promise<void> | undefined;
  let tickAgain = false;
  let stopped = false;
  let lastPrune = 0;

  function nudge(): void {
    for (const wake of [...idleWaiters]) wake();
    if (stopped) return;
    if (ticking) {
      tickAgain = true;
      return;
    }
    ticking = tick()
      .catch((err: unknown) => log.warn({ err }, 'webhooks: tick failed'))
      .finally(() => {
        ticking = undefined;
        if (tickAgain) {
          tickAgain = false;
          nudge();
        }
      });
  }

  async function tick(): Promise<void> {
    const free = settings.maxConcurrency - held.size;
    if (free > 0) {
      for (const id of await sql.claimWebhooks(pool, instanceId, free, leaseMs)) {
        if (stopped || held.has(id)) continue;
        held.set(
          id,
          drain(id)
            .catch((err: unknown) => log.warn({ err, webhookId: id }, 'webhooks: sending failed; the endpoint is retried when its lease runs out'))
            .finally(() => {
              held.delete(id);
              nudge();
            }),
        );
      }
    }
    if (settings.retentionDays > 0 && Date.now() - lastPrune > PRUNE_EVERY_MS) {
      lastPrune = Date.now();
      await sql.pruneDeliveries(pool, settings.retentionDays, PRUNE_BATCH);
    }
  }

  function retryAt(when: Date): void {
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      nudge();
    }, Math.max(0, when.getTime() - Date.now()) + 5);
    timer.unref();
    retryTimers.add(timer);
  }

  async function drain(id: string): Promise<void> {
    const connection = makeConnection({ allowPrivate: settings.allowPrivate, timeoutMs: settings.timeoutMs, signal: aborter.signal });
    const recorder = makeOutcomeRecorder({ pool, instanceId, webhookId: id, gatherMs: settings.gatherMs, onRecorded: (n) => countDelivered(n) });
    try {
      if ((await hold(id, connection, recorder)) === 'stop') return;
      // What was delivered is recorded before letting go, so that the next holder does not send it again.
      await recorder.settle();
      await sql.releaseLease(pool, id, instanceId);
    } finally {
      connection.destroy();
    }
  }

  function countDelivered(n: number): void {
    for (let i = 0; i < n; i++) options.onResult?.('delivered');
  }

  /** Sends the held endpoint its events until there is nothing left, it is let go or lost; 'release': let go of the lease. */
  async function hold(id: string, connection: Connection, recorder: OutcomeRecorder): Promise<'release' | 'stop'> {
    let webhook: sql.HeldWebhook | undefined;
    let target: Target | undefined;
    let renewedAt = 0;
    let idleSince: number | undefined;
    for (;;) {
      if (stopped) return 'release';
      // Renewed (and the endpoint re-read: a PATCH applies) before what is left of the lease could not cover an attempt.
      if (!webhook || Date.now() - renewedAt > settings.databaseTimeoutMs) {
        // The cursor read back must be where this sender is: what it delivered recorded first.
        if (!(await recorder.settle())) return 'release';
        webhook = await sql.renewLease(pool, id, instanceId, leaseMs);
        // Lost (taken over after running out), or disabled or deleted meanwhile.
        if (!webhook) return 'release';
        renewedAt = Date.now();
        target = targetOf(webhook, connection, target);
      }
      const searchedAt = Date.now();
      const { events, scannedTo, scanned } = await sql.findNextEvents(pool, webhook, BATCH);
      if (events.length === 0) {
        if (scannedTo !== null) {
          if (!(await recorder.settle())) return 'release';
          if (!(await sql.advanceCursor(pool, id, instanceId, scannedTo))) return 'release';
          webhook.cursor = scannedTo;
          continue;
        }
        // Kept a moment for the next events (a NOTIFY wakes it): claiming again costs more than waiting.
        idleSince ??= Date.now();
        const left = LINGER_MS - (Date.now() - idleSince);
        if (left <= 0) return 'release';
        await waitForWork(left);
        continue;
      }
      idleSince = undefined;
      let sent = 0;
      for (const event of events) {
        // Bounded: the statement in flight has the database timeout.
        if (!(await recorder.room())) return 'release';
        if (Date.now() - renewedAt > settings.databaseTimeoutMs) break;
        const next = await attempt(webhook, target!, event, recorder);
        if (next !== 'next') return next;
        webhook.cursor = event.id;
        sent++;
      }
      // Caught up: what comes next gathers a moment, so that the next search finds more than one.
      if (sent === events.length && events.length < BATCH && scanned < sql.SCAN_WINDOW) await pause(settings.gatherMs - (Date.now() - searchedAt));
    }
  }

  /** Resolves after `ms`, or at once when stopping. */
  function pause(ms: number): Promise<void> {
    if (ms <= 0 || stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        aborter.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      aborter.signal.addEventListener('abort', done);
    });
  }

  function waitForWork(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      idleWaiters.add(done);
    });
  }

  /**
   * One attempt at `event`. A 2xx goes to the recorder and the drain goes on at once; any
   * other outcome is recorded here, after everything delivered before it (it ends the
   * drain, or moves the cursor past a failed event, in the same statement as its row).
   */
  async function attempt(webhook: sql.HeldWebhook, target: Target, event: sql.HeadEvent, recorder: OutcomeRecorder): Promise<'next' | 'stop' | 'release'> {
    const startedAt = new Date();
    const result = await send(target, event);
    // Shutting down aborted it: not an answer. The next holder sends it again.
    if (stopped) return 'release';
    if (result.ok) {
      recorder.delivered({ event: { id: event.id, type: event.type }, startedAt, statusCode: result.statusCode });
      return 'next';
    }
    if (!(await recorder.settle())) return 'release';
    const outcome = outcomeOf(webhook.id, event, startedAt, result);
    // Not recorded: the lease was lost, or the endpoint disabled meanwhile.
    if (!(await sql.recordAttempt(pool, instanceId, outcome))) return 'release';
    const what: DeliveryResult = outcome.disable ? 'gone' : outcome.status === 'pending' ? 'retried' : outcome.status;
    options.onResult?.(what);
    log.info({ webhookId: webhook.id, eventId: event.id, attempts: event.attempts + 1, result: what, statusCode: outcome.statusCode, error: outcome.error, nextAttemptAt: outcome.nextAttemptAt }, `webhooks: delivery ${what}`);
    if (outcome.status !== 'pending') return 'next';
    // recordAttempt let go of the lease with the backoff.
    if (outcome.nextAttemptAt) retryAt(outcome.nextAttemptAt);
    return 'stop';
  }

  async function send(target: Target, event: sql.HeadEvent): Promise<PostResult> {
    if (target.secret instanceof SecretUnavailableError) return { ok: false, error: target.secret.message };
    return postEvent(settings, { url: target.url, secret: target.secret }, event.id, eventBody(event), event.attempts + 1, { connection: target.connection });
  }

  /** What sending to `webhook` needs, worked out once per held endpoint (again only when a PATCH changed it). */
  function targetOf(webhook: sql.HeldWebhook, connection: Connection, previous: Target | undefined): Target {
    if (previous && previous.storedUrl === webhook.url && previous.storedSecret === webhook.secret) return previous;
    let secret: string | SecretUnavailableError;
    try {
      secret = options.secrets.open(webhook.secret, webhook.id);
    } catch (err) {
      // A configuration problem, not the receiver's: retried like a failed attempt, and shown.
      if (!(err instanceof SecretUnavailableError)) throw err;
      secret = err;
    }
    return { storedUrl: webhook.url, storedSecret: webhook.secret, url: new URL(webhook.url), secret, connection };
  }

  function outcomeOf(webhookId: string, head: sql.HeadEvent, startedAt: Date, result: PostResult): sql.AttemptOutcome {
    const base = { webhookId, event: { id: head.id, type: head.type }, startedAt, statusCode: result.statusCode ?? null };
    if (result.ok) return { ...base, status: 'delivered', error: null, nextAttemptAt: null };
    if (result.statusCode === 410) {
      return { ...base, status: 'pending', error: result.error, nextAttemptAt: null, disable: `the receiver answered 410 Gone at ${new Date().toISOString()}` };
    }
    const deadline = head.at.getTime() + settings.maxAgeMs;
    const now = Date.now();
    if (now >= deadline) return { ...base, status: 'failed', error: result.error, nextAttemptAt: null };
    const delay = backoffDelayMs(head.attempts, { initialMs: settings.retryMinMs, maxMs: settings.retryMaxMs });
    return { ...base, status: 'pending', error: result.error, nextAttemptAt: new Date(Math.min(now + delay, deadline)) };
  }

  const poll = setInterval(nudge, settings.pollIntervalMs);
  poll.unref();
  nudge();

  return {
    nudge,
    async stop() {
      stopped = true;
      clearInterval(poll);
      for (const timer of retryTimers) clearTimeout(timer);
      aborter.abort();
      for (const wake of [...idleWaiters]) wake();
      await ticking;
      await Promise.all(held.values());
    },
  };
}
