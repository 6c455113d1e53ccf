/**
 * One DSS stream's WebSocket, for as long as this instance holds the stream.
 *
 * Modes:
 * - CONNECTING: handshake under way (`wss://host/stream?stream_key=…&seq_start=…`).
 * - OPEN: frames arrive. Heartbeats are answered with `Z` in the message handler
 *   itself, ahead of any queued events; events queue and go, in seq order, into an
 *   `EventPipeline` (concurrent across devices, ordered per device), the position
 *   moving only over events whose actuations all committed.
 * - WAITING: the socket closed or failed; reconnect after exponential backoff with
 *   jitter, once the events in hand settled, resuming at the position + 1.
 * - STOPPED: `stop()` was called (lock lost, stream edited or deleted, shutdown).
 *
 * The position and counters are written to `dss_streams` every `flushIntervalMs`
 * and on stop (and, for a stream that started live, before its first event is acted on). Losing up to that much progress on a crash costs a replay of those
 * events, which the idempotency key and rule state make harmless.
 */
import WebSocket from 'ws';
import type { Config } from '../config/config.js';
import type { Pool } from '../db/pool.js';
import { makeLogSampler } from '../log-sampler.js';
import type { Logger } from '../logger.js';
import { DSS_ERRORS, type DssErrorCode } from './errors.js';
import { makeEventPipeline, type EventPipeline, type EventTask } from './event-pipeline.js';
import { toDssEvent, type DssEvent } from './events.js';
import { HEARTBEAT_ANSWER, parseFrames } from './frame-parser.js';
import * as streamsSql from './streams-sql.js';

export const CONNECTING = 'connecting';
export const OPEN = 'open';
export const WAITING = 'waiting';
export const STOPPED = 'stopped';
export type StreamClientState = typeof CONNECTING | typeof OPEN | typeof WAITING | typeof STOPPED;

export type DssClientConfig = Pick<
  Config,
  | 'dssReconnectMinMs' | 'dssReconnectMaxMs' | 'dssConnectTimeoutMs' | 'dssIdleTimeoutMs' | 'dssFlushIntervalMs' | 'dssMaxQueuedEvents' | 'dssMaxInFlightEvents' | 'maxMessageBytes'
>;

/** How a received frame was taken: an event queued for the rules, a heartbeat answered, or skipped. */
export type FrameKind = 'event' | 'heartbeat' | 'error';

export interface StreamClientOptions {
  stream: { id: string; name: string; url: string; streamKey: string; lastSeq: number | null };
  instanceId: string;
  config: DssClientConfig;
  logger: Logger;
  pool: Pool;
  /** Called for every frame received (metrics). */
  onFrame?(kind: FrameKind): void;
  /**
   * The event's tasks (see `EventPipeline`); a task that rejects makes the client reconnect and
   * replay from its event. A rule actuation the event cannot become is reported to `skipped`
   * (counted and recorded like a skipped frame) and its task resolves: the position moves on.
   */
  planEvent(event: DssEvent, log: Logger, skipped: (code: DssErrorCode, detail: string) => void): Promise<EventTask[]>;
}

export interface StreamClient {
  readonly state: StreamClientState;
  /** Last seq whose event was handled (`null`: none yet; the stream started live). */
  readonly lastSeq: number | null;
  stop(): Promise<void>;
}

export function startStreamClient(options: StreamClientOptions): StreamClient {
  const { stream, instanceId, config, pool, planEvent } = options;
  const endpoint = safeEndpoint(stream.url);
  const log = options.logger.child({ component: 'dss', streamId: stream.id, stream: stream.name });
  // Skips are the DSS peer's (or its devices') mistakes, repeated at its will: a few lines per code and minute.
  const skipLog = makeLogSampler(log);

  let state: StreamClientState = CONNECTING;
  let socket: WebSocket | undefined;
  let lastSeq = stream.lastSeq;
  let attempt = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  const queue: DssEvent[] = [];
  let processing: Promise<void> | undefined;
  let pipeline: EventPipeline | undefined;
  /** Highest seq handed to this connection's pipeline; anything at or below it is a repeat. */
  let acceptedSeq: number | null = null;
  let warnedFor: WebSocket | undefined;
  let warnedRepeat = false;
  let paused = false;
  let connectedWrites = Promise.resolve();
  const pending = { events: 0, heartbeats: 0, errors: 0, lastEventAt: null as Date | null, lastError: null as string | null, dirty: false };

  const flushTimer = setInterval(() => void flush(), config.dssFlushIntervalMs);
  flushTimer.unref();

  function url(): string {
    const u = new URL(stream.url);
    u.searchParams.set('stream_key', stream.streamKey);
    if (lastSeq !== null) u.searchParams.set('seq_start', String(lastSeq + 1));
    return u.toString();
  }

  function connect(): void {
    if (state === STOPPED) return;
    state = CONNECTING;
    log.debug({ endpoint, seqStart: lastSeq === null ? null : lastSeq + 1, attempt }, 'dss: connecting');
    let ws: WebSocket;
    try {
      ws = new WebSocket(url(), { handshakeTimeout: config.dssConnectTimeoutMs, maxPayload: config.maxMessageBytes * 16, perMessageDeflate: false });
    } catch (err) {
      // The message would quote the URL, stream key included: log only its kind.
      log.error({ endpoint, error: (err as Error).name }, 'dss: cannot open the stream URL; retrying after backoff');
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.on('open', () => socketOnOpen(ws));
    ws.on('message', (data: Buffer) => socketOnMessage(ws, data));
    ws.on('error', (err) => socketOnError(err));
    ws.on('close', (code, reason) => socketOnClose(ws, code, reason.toString()));
  }

  function socketOnOpen(ws: WebSocket): void {
    if (ws !== socket) return;
    state = OPEN;
    resetIdle(ws);
    log.info({ endpoint, seqStart: lastSeq === null ? null : lastSeq + 1 }, 'dss: stream connected');
    recordConnected(true);
  }

  function socketOnMessage(ws: WebSocket, data: Buffer): void {
    if (ws !== socket || state === STOPPED) return;
    resetIdle(ws);
    attempt = 0;
    for (const frame of parseFrames(data)) {
      if (frame.kind === 'heartbeat') {
        ws.send(HEARTBEAT_ANSWER);
        options.onFrame?.('heartbeat');
        pending.heartbeats++;
        pending.dirty = true;
      } else if (frame.kind === 'invalid') {
        skip(frame.code, frame.message);
      } else {
        const event = toDssEvent(frame.rawEvent);
        if (!event) {
          skip('DSS_ERR_EVENT_SHAPE', `seq ${JSON.stringify(frame.rawEvent.seq ?? null)}`);
          continue;
        }
        queue.push(event);
        options.onFrame?.('event');
      }
    }
    if (queue.length >= config.dssMaxQueuedEvents && !paused) {
      // Stop reading until the rules catch up; TCP pushes back on DSS.
      paused = true;
      ws.pause();
    }
    if (queue.length > 0) processQueue(ws);
  }

  /** A frame that is not an event we can take: counted as an error frame too. */
  function skip(code: DssErrorCode, message: string): void {
    options.onFrame?.('error');
    record(code, message);
  }

  /** Counted in `errors`, kept as `lastError`, logged (sampled). */
  function record(code: DssErrorCode, message: string): void {
    pending.errors++;
    pending.lastError = `${code}: ${message}`;
    pending.dirty = true;
    skipLog.log(code, 'warn', { code, detail: message }, `dss: ${DSS_ERRORS[code]}; skipped`);
  }

  function pipelineFor(ws: WebSocket): EventPipeline {
    if (pipeline) return pipeline;
    acceptedSeq = lastSeq;
    let failed = false;
    pipeline = makeEventPipeline({
      initialSeq: lastSeq,
      maxInFlight: config.dssMaxInFlightEvents,
      onAdvance(seq) {
        lastSeq = seq;
        // The position changed: it must be written even if no event arrived since the last
        // flush (a periodic flush that started before this advance cleared the flag).
        pending.dirty = true;
      },
      onError(err, seq) {
        // Events behind the failed one fail with the same error; report it once.
        if (failed) return;
        failed = true;
        pending.errors++;
        pending.lastError = `processing seq ${seq} failed: ${err.message}`;
        pending.dirty = true;
        log.error({ err, seq }, 'dss: event processing failed; reconnecting to replay from it');
        queue.length = 0;
        ws.terminate();
      },
    });
    return pipeline;
  }

  /** Feeds queued events into the pipeline in seq order; at most one loop runs. */
  function processQueue(ws: WebSocket): void {
    if (processing) return;
    if (ws !== warnedFor) {
      warnedFor = ws;
      warnedRepeat = false;
    }
    const events = pipelineFor(ws);
    processing = (async () => {
      try {
        while (queue.length > 0 && state !== STOPPED && !events.failure) {
          const event = queue.shift()!;
          if (acceptedSeq !== null && event.seq <= acceptedSeq) {
            // We asked for seq_start = position + 1, so this is a repeat or DSS numbering anew.
            if (!warnedRepeat) log.warn({ seq: event.seq, acceptedSeq }, 'dss: event at or below the position skipped; if DSS restarted its numbering, recreate the stream to start again from live events');
            warnedRepeat = true;
            continue;
          }
          if (lastSeq === null) await anchorPosition(event.seq);
          acceptedSeq = event.seq;
          pending.events++;
          pending.lastEventAt = new Date();
          pending.dirty = true;
          await events.push(event.seq, await planEvent(event, log, record));
          if (paused && queue.length <= config.dssMaxQueuedEvents / 4 && ws === socket) {
            paused = false;
            ws.resume();
          }
        }
      } catch (err) {
        // Planning failed (the rules could not be loaded) or the first position could not be
        // stored: as for a failed task, replay from here.
        pending.errors++;
        pending.lastError = `planning failed: ${(err as Error).message}`;
        pending.dirty = true;
        log.error({ err }, 'dss: could not plan an event; reconnecting to replay from it');
        queue.length = 0;
        ws.terminate();
      } finally {
        processing = undefined;
      }
    })();
  }

  /**
   * A stream that never stored a position started live. Before acting on its first event,
   * store the position just before it and wait for the commit: a successor that takes over
   * after a crash then replays from that event, instead of starting live and missing what
   * arrived while no instance held the stream (the periodic flush may be seconds away).
   * In memory first, so that a failed write still reconnects with `seq_start` = this event.
   */
  async function anchorPosition(firstSeq: number): Promise<void> {
    lastSeq = firstSeq - 1;
    await streamsSql.recordProgress(pool, stream.id, { lastSeq, events: 0, heartbeats: 0, errors: 0, lastEventAt: null, lastError: null });
  }

  /** Resolves when this connection's events all settled, so the position is final. */
  async function settle(): Promise<void> {
    await processing;
    await pipeline?.idle();
    pipeline = undefined;
  }

  function socketOnError(err: Error): void {
    // Handshake failures (refused, 401 for a bad key, timeout) and protocol errors; 'close' follows.
    // A failed handshake is one of the stream's errors (a `dss.stream.error` event once
    // flushed): otherwise a stream with a wrong key or URL would only ever look "not connected".
    if (state === CONNECTING) {
      pending.errors++;
      pending.lastError = `DSS_ERR_CONNECT: ${withoutQuery(err.message)}`;
      pending.dirty = true;
    }
    log.warn({ endpoint, err: { message: withoutQuery(err.message), code: (err as { code?: string }).code } }, 'dss: stream socket error');
  }

  function socketOnClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== socket) return;
    clearTimeout(idleTimer);
    socket = undefined;
    queue.length = 0;
    paused = false;
    if (state === STOPPED) return;
    const wasOpen = state === OPEN;
    state = WAITING;
    if (wasOpen) {
      log.info({ code, reason }, 'dss: stream closed');
      recordConnected(false);
    }
    scheduleReconnect();
  }

  function scheduleReconnect(): void {
    state = WAITING;
    const ceiling = Math.min(config.dssReconnectMaxMs, config.dssReconnectMinMs * 2 ** Math.min(attempt, 20));
    // Equal jitter: never less than half the step, so instances do not reconnect in lockstep.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    attempt++;
    log.debug({ delayMs: delay, attempt }, 'dss: reconnecting after backoff');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      // Resume only after the events in hand settled, so seq_start is exact.
      void settle().then(async () => {
        await flush();
        connect();
      });
    }, delay);
  }

  /** In order: a quick open-close must not end with `connected = true`. */
  function recordConnected(connected: boolean): void {
    connectedWrites = connectedWrites.then(() =>
      streamsSql.markConnected(pool, stream.id, instanceId, connected).catch((err) => log.warn({ err }, 'dss: could not record the connection state')),
    );
  }

  function resetIdle(ws: WebSocket): void {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      log.warn({ idleMs: config.dssIdleTimeoutMs }, 'dss: nothing received, not even a heartbeat; reconnecting');
      ws.terminate();
    }, config.dssIdleTimeoutMs);
    idleTimer.unref();
  }

  async function flush(): Promise<void> {
    if (!pending.dirty) return;
    const progress = { lastSeq, events: pending.events, heartbeats: pending.heartbeats, errors: pending.errors, lastEventAt: pending.lastEventAt, lastError: pending.lastError };
    pending.events = pending.heartbeats = pending.errors = 0;
    pending.lastError = null;
    pending.dirty = false;
    try {
      await streamsSql.recordProgress(pool, stream.id, progress);
    } catch (err) {
      // Keep the counts for the next flush.
      pending.events += progress.events;
      pending.heartbeats += progress.heartbeats;
      pending.errors += progress.errors;
      pending.lastError ??= progress.lastError;
      pending.dirty = true;
      log.warn({ err }, 'dss: could not record stream progress');
    }
  }

  connect();

  return {
    get state() {
      return state;
    },
    get lastSeq() {
      return lastSeq;
    },
    async stop() {
      if (state === STOPPED) return;
      state = STOPPED;
      clearTimeout(reconnectTimer);
      clearTimeout(idleTimer);
      clearInterval(flushTimer);
      const ws = socket;
      if (ws && ws.readyState !== WebSocket.CLOSED) {
        const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
        ws.close(1001, 'going away');
        const timer = setTimeout(() => ws.terminate(), 2_000);
        await closed;
        clearTimeout(timer);
      }
      await settle();
      await flush();
      recordConnected(false);
      await connectedWrites;
      log.info({ lastSeq }, 'dss: stream client stopped');
    },
  };
}

/** The URL without query or credentials, for logs. */
function safeEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

/** An error message without any URL query string in it: the stream key travels in one. */
function withoutQuery(message: string): string {
  return message.replace(/\?\S*/g, '?…').slice(0, 200);
}
