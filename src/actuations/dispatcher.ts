/**
 * Moves queued actuations onto the sockets of the devices connected to this instance.
 *
 * Each connected device is in one of two lanes:
 * - BACKLOG: just authenticated with something pending. What was pending when it connected (queued, and for
 *   devices that ack, sent before and never acked) drains at `backlogRate` per second
 *   for the whole instance, oldest device first, with jitter, so that a thousand devices
 *   returning at once do not flood themselves or the database. As soon as nothing of a
 *   device's backlog is left, that device moves to LIVE.
 * - LIVE: new actuations are claimed as soon as they are committed (a local nudge from
 *   the queue, or a NOTIFY from another instance), never behind anyone's backlog.
 *   A device whose session statement found nothing of it queued or sent starts here,
 *   without a backlog claim (most connects: a claim per connect was ~10% of PostgreSQL's
 *   CPU per connect), unless a nudge for it came since that statement was sent (the
 *   actuation may be newer than the statement's snapshot; nudge-log.ts): then BACKLOG.
 *
 * Direct sends: the submitter may reserve a LIVE device (`reserveDirect`) so that the
 * transaction recording its actuation also marks it sent; it is written here right after
 * the commit (`completeDirect`).
 *
 * A device is in at most one claim or direct send at a time, so its actuations go out in
 * seq order.
 *
 * Backpressure: before a device is claimed for (either lane) or reserved for a direct
 * send, what is already buffered for its socket is checked. At `maxBufferedBytes` or
 * more the device is left out (its actuations stay `queued`) and watched until the
 * buffer has drained below half the bound, then nudged. So `sent` means "handed to a
 * socket that is reading", and a device that stops reading holds at most the bound plus
 * one claim (LIVE_PER_DEVICE actuations) or one direct-send batch in this process.
 *
 * The table is the truth: a periodic poll and every LISTEN reconnect re-check all live
 * devices, covering missed notifications. The poll first reads which live devices have
 * anything queued (poll-sql.ts, no locks) and claims for those only: a claim for every live
 * device held all of them out of direct sends while it ran (1,000 devices: a 7-17 ms claim
 * every DISPATCH_POLL_MS, during which every new actuation waited as a queued row for it
 * and one more claim; bench/experiments/poll-claim.ts).
 */
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { actuationMessage } from '../gateway/protocol.js';
import type { Logger } from '../logger.js';
import { backoffDelayMs } from '../simulator/backoff.js';
import { claimPending, hasEarlierUnacked, type ClaimedActuation, type DeliveryTarget } from './delivery-sql.js';
import type { Lifecycle } from './lifecycle.js';
import { makeNudgeLog } from './nudge-log.js';
import { devicesWithQueued } from './poll-sql.js';
import type { LocalDelivery } from './submitter.js';
import { requeueUnwritten } from './transitions-sql.js';

/**
 * What the dispatcher needs of a connected device (the gateway's connections are such a
 * channel): which session it is, a way to write to it, and how much is waiting to be written.
 */
export interface DeviceChannel {
  readonly deviceId: string | null;
  readonly sessionId: number | null;
  readonly accountId: string | null;
  /** Writes one text frame; false if the socket is no longer open. */
  send(text: string): boolean;
  /** Bytes written and not yet taken by the kernel. */
  bufferedBytes(): number;
}

export interface DispatcherOptions {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  /** Actuations per second this instance sends out of reconnecting devices' backlogs. */
  backlogRate: number;
  redeliverUnacked: boolean;
  pollIntervalMs: number;
  /** A device with this much buffered for its socket gets nothing more until it drains (DEVICE_MAX_BUFFERED_BYTES). */
  maxBufferedBytes: number;
  /** Bound on a wait for the database (DATABASE_TIMEOUT_MS): uncertain direct sends are requeued only after it. */
  databaseTimeoutMs: number;
  /** Told the claims' `sent` and the requeues' `queued`, once committed. */
  lifecycle?: Lifecycle;
}

/** What the session statement saw of a device it opened (see openSessions in gateway/sessions-sql.ts). */
export interface OpenedWith {
  /** Whether the device had actuations queued, or sent and not acked, at the statement's snapshot. */
  hadPending: boolean;
  /** `performance.now()` before the session statement was sent: nudges from then on may be newer than its snapshot. */
  requestedAt: number;
}

export interface Dispatcher extends LocalDelivery {
  /** Without `opened` (not known), the device starts in BACKLOG. */
  deviceConnected(connection: DeviceChannel, opened?: OpenedWith): void;
  deviceDisconnected(connection: DeviceChannel): void;
  /**
   * The first ack of this connection was recorded. A device's unacked actuations of
   * earlier sessions are re-sent on reconnect only once it is known to ack (it has an ack
   * recorded), so a device whose first acks were lost (the instance holding it died)
   * would otherwise never get them again: if it has such, it goes back to the backlog lane.
   */
  deviceAcked(connection: DeviceChannel): void;
  /** New actuations were committed for these devices. */
  nudge(deviceIds: Iterable<string>): void;
  nudgeAll(): void;
  isConnectedHere(deviceId: string): boolean;
  close(): Promise<void>;
}

/** Most actuations claimed for one device in one live claim; more are claimed right after. */
const LIVE_PER_DEVICE = 200;
const LIVE_MAX_DEVICES_PER_CLAIM = 2_000;
/**
 * Most rows one live claim marks sent; when it is full, its devices are claimed for again at
 * once. Without it, a bulk for ~900 devices held on another instance (13-25 queued each) was
 * one claim of ~20,000 rows that ran past DATABASE_TIMEOUT_MS on a busy machine, and every
 * poll retried the same claim, which timed out again (bench ceilings, WORKERS=2, bulk).
 */
export const LIVE_MAX_ROWS_PER_CLAIM = 2_000;
const MAX_CONCURRENT_LIVE_CLAIMS = 2;
const BACKLOG_TICK_MS = 100;
const BACKLOG_MAX_DEVICES_PER_CLAIM = 5_000;
/** Most backlog rows one device gets per tick (a deep queue drains over several ticks, others get their turn). */
const BACKLOG_MAX_PER_DEVICE = 100;
/** How often the buffers of devices over the bound are looked at (ws has no documented 'drain' event). */
const DRAIN_POLL_MS = 20;

export function makeDispatcher(options: DispatcherOptions): Dispatcher {
  const { pool, logger, instanceId } = options;
  const log = logger.child({ component: 'dispatcher' });

  const live = new Map<string, DeviceChannel>();
  const backlog = new Map<string, DeviceChannel>();
  /** Devices over the buffer bound, waiting for their socket to drain. */
  const stalled = new Map<string, DeviceChannel>();
  let drainTimer: NodeJS.Timeout | undefined;
  const dirty = new Set<string>();
  const claiming = new Set<string>();
  /** Connections whose first ack was recorded while they were in BACKLOG (see deviceAcked). */
  const ackedInBacklog = new WeakSet<DeviceChannel>();
  const nudges = makeNudgeLog();
  let liveClaims = 0;
  let backlogBusy = false;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  function track<T>(p: Promise<T>): Promise<T> {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  /** Wakes the requeue waits at close, so that they make their last try at once. */
  const requeueWaits = new Set<() => void>();

  function pause(ms: number): Promise<void> {
    if (closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        requeueWaits.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      requeueWaits.add(wake);
    });
  }

  /**
   * Puts actuations marked `sent` but not written back to `queued` (only those still `sent`),
   * after `delayMs`, retrying while the database is unavailable: otherwise they would stay
   * `sent` to a socket that never got them until the device reconnects or their TTL. Once the
   * dispatcher is closing, one last try.
   */
  function requeue(ids: string[], delayMs: number): void {
    const attempt = async () => {
      await pause(delayMs);
      for (let n = 0; ; n++) {
        try {
          await requeueUnwritten(pool, ids, options.lifecycle);
          dispatcher.nudgeAll();
          return;
        } catch (err) {
          if (!isDatabaseUnavailable(err) || closed) throw err;
          if (n === 0) log.warn({ err, count: ids.length }, 'dispatcher: unwritten actuations not requeued yet (database unavailable); retrying');
          await pause(backoffDelayMs(n, { initialMs: 200, maxMs: 5_000 }));
        }
      }
    };
    track(attempt()).catch((err) =>
      log.error({ err, count: ids.length }, 'dispatcher: could not requeue unwritten actuations; devices that ack get them again on reconnect, others when they expire'),
    );
  }

  /** True (and the device is watched until it drains) when its socket has the bound or more buffered. */
  function overBound(deviceId: string, connection: DeviceChannel): boolean {
    if (stalled.get(deviceId) === connection) return true;
    if (connection.bufferedBytes() < options.maxBufferedBytes) return false;
    stalled.set(deviceId, connection);
    drainTimer ??= setInterval(checkDrained, DRAIN_POLL_MS);
    return true;
  }

  function checkDrained(): void {
    let backlogResumed = false;
    for (const [deviceId, connection] of stalled) {
      const current = live.get(deviceId) ?? backlog.get(deviceId);
      if (current !== connection) {
        stalled.delete(deviceId); // gone, or replaced by a newer session (which is checked on its own)
      } else if (connection.bufferedBytes() < options.maxBufferedBytes / 2) {
        stalled.delete(deviceId);
        if (live.has(deviceId)) dirty.add(deviceId);
        else backlogResumed = true;
      }
    }
    if (stalled.size === 0 || closed) {
      clearInterval(drainTimer);
      drainTimer = undefined;
    }
    pumpLive();
    if (backlogResumed) scheduleBacklogTick();
  }


  /**
   * Claims (marking sent), writes, and requeues what could not be written; returns how
   * many rows each device got and (backlog claims) which devices' backlogs are drained.
   */
  async function deliver(targets: DeliveryTarget[], perDevice: number, limit: number, lane: 'live' | 'backlog') {
    const { claimed, drained } = await claimPending(pool, targets, { perDevice, limit, instanceId, backlog: lane === 'backlog' }, options.lifecycle);
    const counts = new Map<string, number>();
    for (const row of claimed) counts.set(row.deviceId, (counts.get(row.deviceId) ?? 0) + 1);
    await requeueUnwritten(pool, write(claimed), options.lifecycle);
    return { counts, drained };
  }

  /** Writes actuations marked sent (in device, seq order); returns the ids that could not be written. */
  function write(rows: ClaimedActuation[]): string[] {
    const unwritten: string[] = [];
    const stopped = new Set<string>();
    for (const row of rows) {
      const connection = live.get(row.deviceId) ?? backlog.get(row.deviceId);
      const frame = actuationMessage(row.id, row, row.seq, row.accountId ?? connection?.accountId ?? null);
      if (stopped.has(row.deviceId) || !connection || connection.sessionId !== row.sessionId || !connection.send(frame)) {
        // Socket gone: this and the device's later rows go back to the queue, in order, for its next session.
        stopped.add(row.deviceId);
        unwritten.push(row.id);
      }
    }
    return unwritten;
  }

  function pumpLive(): void {
    while (!closed && liveClaims < MAX_CONCURRENT_LIVE_CLAIMS && dirty.size > 0) {
      const targets: DeliveryTarget[] = [];
      for (const deviceId of dirty) {
        if (targets.length >= LIVE_MAX_DEVICES_PER_CLAIM) break;
        if (claiming.has(deviceId)) continue;
        dirty.delete(deviceId);
        const connection = live.get(deviceId);
        if (!connection || connection.sessionId === null) continue;
        if (overBound(deviceId, connection)) continue; // nudged again once drained
        targets.push({ deviceId, sessionId: connection.sessionId, redeliver: false });
      }
      if (targets.length === 0) return;
      for (const t of targets) claiming.add(t.deviceId);
      liveClaims++;
      const limit = Math.min(LIVE_PER_DEVICE * targets.length, LIVE_MAX_ROWS_PER_CLAIM);
      track(deliver(targets, LIVE_PER_DEVICE, limit, 'live'))
        .then(
          ({ counts }) => {
            // A full claim may have left any of its devices with more queued (oldest device first).
            const full = [...counts.values()].reduce((a, b) => a + b, 0) >= limit;
            if (full) for (const t of targets) dirty.add(t.deviceId);
            else for (const [deviceId, n] of counts) if (n >= LIVE_PER_DEVICE) dirty.add(deviceId);
          },
          // Not re-marked dirty: the next poll retries, rather than spinning against a sick database.
          (err) => log.error({ err, devices: targets.length }, 'dispatcher: live claim failed; the next poll retries'),
        )
        .finally(() => {
          liveClaims--;
          for (const t of targets) claiming.delete(t.deviceId);
          setImmediate(pumpLive);
        });
    }
  }

  // Backlog lane: a token bucket refilled at backlogRate, ticking with ±50% jitter.
  let budget = 0;
  let lastTick = Date.now();
  let backlogTimer: NodeJS.Timeout | undefined;

  function scheduleBacklogTick(): void {
    if (closed || backlogTimer) return;
    const delay = BACKLOG_TICK_MS * (0.5 + Math.random());
    backlogTimer = setTimeout(() => {
      backlogTimer = undefined;
      void backlogTick();
    }, delay);
  }

  async function backlogTick(): Promise<void> {
    const now = Date.now();
    budget = Math.min(options.backlogRate, budget + ((now - lastTick) / 1000) * options.backlogRate);
    lastTick = now;
    if (backlogBusy || backlog.size === 0) return;
    const limit = Math.floor(budget);
    if (limit < 1) return scheduleBacklogTick();
    const targets: DeliveryTarget[] = [];
    for (const [deviceId, connection] of backlog) {
      if (targets.length >= BACKLOG_MAX_DEVICES_PER_CLAIM) break;
      if (connection.sessionId === null || claiming.has(deviceId) || overBound(deviceId, connection)) continue;
      targets.push({ deviceId, sessionId: connection.sessionId, redeliver: options.redeliverUnacked });
    }
    if (targets.length === 0) return scheduleBacklogTick();
    backlogBusy = true;
    for (const t of targets) claiming.add(t.deviceId);
    try {
      const { counts, drained } = await track(deliver(targets, Math.min(limit, BACKLOG_MAX_PER_DEVICE), limit, 'backlog'));
      budget -= [...counts.values()].reduce((a, b) => a + b, 0);
      // Each device moves to LIVE on its own once nothing of its backlog is left, however
      // busy the others are (live arrivals must not keep a whole instance in BACKLOG).
      const sessions = new Map(targets.map((t) => [t.deviceId, t.sessionId]));
      for (const deviceId of drained) {
        const connection = backlog.get(deviceId);
        if (connection && connection.sessionId === sessions.get(deviceId)) {
          backlog.delete(deviceId);
          live.set(deviceId, connection);
          dirty.add(deviceId);
          if (ackedInBacklog.delete(connection)) dispatcher.deviceAcked(connection);
        }
      }
    } catch (err) {
      log.error({ err, devices: targets.length }, 'dispatcher: backlog claim failed; will retry');
    } finally {
      backlogBusy = false;
      for (const t of targets) claiming.delete(t.deviceId);
    }
    pumpLive();
    if (backlog.size > 0) scheduleBacklogTick();
  }

  let polling = false;
  async function pollQueued(): Promise<void> {
    if (closed || polling) return;
    polling = true;
    try {
      dispatcher.nudge(await track(devicesWithQueued(pool, [...live.keys()])));
    } catch (err) {
      log.error({ err, devices: live.size }, 'dispatcher: poll for queued actuations failed; the next poll retries');
    } finally {
      polling = false;
    }
    if (backlog.size > 0) scheduleBacklogTick();
  }
  const poll = setInterval(() => void pollQueued(), options.pollIntervalMs);
  poll.unref();

  const dispatcher: Dispatcher = {
    deviceConnected(connection, opened) {
      const deviceId = connection.deviceId!;
      if (opened && !opened.hadPending && !nudges.nudgedSince(deviceId, opened.requestedAt)) {
        backlog.delete(deviceId);
        live.set(deviceId, connection);
        return;
      }
      live.delete(deviceId);
      backlog.set(deviceId, connection);
      scheduleBacklogTick();
    },
    deviceDisconnected(connection) {
      const deviceId = connection.deviceId!;
      if (live.get(deviceId) === connection) live.delete(deviceId);
      if (backlog.get(deviceId) === connection) backlog.delete(deviceId);
      if (stalled.get(deviceId) === connection) stalled.delete(deviceId);
    },
    deviceAcked(connection) {
      const deviceId = connection.deviceId!;
      const sessionId = connection.sessionId;
      if (!options.redeliverUnacked || closed || sessionId === null) return;
      // Still in BACKLOG: a claim in flight may have read the device before its ack; look once it is LIVE.
      if (backlog.get(deviceId) === connection) return void ackedInBacklog.add(connection);
      if (live.get(deviceId) !== connection) return;
      track(hasEarlierUnacked(pool, deviceId, sessionId)).then(
        (found) => {
          if (!found || closed || live.get(deviceId) !== connection) return;
          live.delete(deviceId);
          backlog.set(deviceId, connection);
          scheduleBacklogTick();
        },
        (err: unknown) => log.warn({ err, deviceId }, 'dispatcher: could not look for unacked actuations of earlier sessions; they go out again on the next reconnect'),
      );
    },
    nudge(deviceIds) {
      const ids = Array.isArray(deviceIds) ? (deviceIds as string[]) : [...deviceIds];
      for (const deviceId of ids) if (live.has(deviceId)) dirty.add(deviceId);
      nudges.record(ids);
      pumpLive();
    },
    nudgeAll() {
      nudges.recordAll();
      for (const deviceId of live.keys()) dirty.add(deviceId);
      pumpLive();
      if (backlog.size > 0) scheduleBacklogTick();
    },
    isConnectedHere: (deviceId) => live.has(deviceId) || backlog.has(deviceId),
    reserveDirect(deviceIds) {
      // Live devices nobody is claiming for: a claim cannot start for them until completeDirect.
      const reserved = new Map<string, number>();
      if (closed) return reserved;
      for (const deviceId of deviceIds) {
        const connection = live.get(deviceId);
        const sessionId = connection?.sessionId;
        // Over the buffer bound: no direct send; the actuation stays queued until the socket drains.
        if (sessionId == null || claiming.has(deviceId) || overBound(deviceId, connection!)) continue;
        claiming.add(deviceId);
        reserved.set(deviceId, sessionId);
      }
      return reserved;
    },
    completeDirect(reserved, sent, uncertain = []) {
      const unwritten = write(sent);
      if (unwritten.length > 0) requeue(unwritten, 0);
      // After the statement that may have committed them can no longer do so (statement_timeout).
      if (uncertain.length > 0) requeue(uncertain, options.databaseTimeoutMs);
      for (const deviceId of reserved.keys()) claiming.delete(deviceId);
      pumpLive();
    },
    async close() {
      closed = true;
      requeueWaits.forEach((wake) => wake());
      clearInterval(poll);
      clearTimeout(backlogTimer);
      clearInterval(drainTimer);
      await Promise.allSettled([...inFlight]);
    },
  };
  return dispatcher;
}
