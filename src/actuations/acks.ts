/**
 * Acknowledgements from devices, batched like submissions. A device can only
 * acknowledge its own actuations: the device id comes from the authenticated
 * connection, never from the message.
 *
 * An ack that could not be recorded because the database was unavailable (refused,
 * reset, timed out, restarting) is retried with backoff until it is recorded, also after
 * its socket closed: applying an ack is idempotent (a second apply of an ack by id only
 * adds a `late_ack` history entry; an `upTo` matches only `sent` rows). At most
 * `maxRetained` acks wait per instance; one beyond that is given up and its device is
 * closed with 500 then 1011, so that its reconnect brings the unacked actuation again
 * (acking devices, `REDELIVER_UNACKED`). At shutdown each waiting ack gets one last try.
 *
 * Order per connection: an `upTo` is applied after that connection's earlier acks by id,
 * and acks by id after an earlier `upTo`. Neither blocks the socket: the device's pings
 * are answered while its acks wait for the database.
 */
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import type { DeviceConnection } from '../gateway/device-connection.js';
import { CLOSE_CODES, CONTENT, RESPONSE_CODES, reply, type AckMessage } from '../gateway/protocol.js';
import { makeLogSampler } from '../log-sampler.js';
import type { Logger } from '../logger.js';
import { makeBatcher } from '../db/batcher.js';
import type { Lifecycle } from './lifecycle.js';
import { ackUpTo, applyAcks, type AckById, type AckOutcome } from './transitions-sql.js';

export interface AckHandler {
  handle(connection: DeviceConnection, message: AckMessage): Promise<void>;
  drain(): Promise<void>;
}

/** What happened to an ack that the database could not take at once. */
export type AckDeferral = 'retried' | 'dropped';

export interface AckHandlerOptions {
  pool: Pool;
  logger: Logger;
  /** Told the acked and failed transitions of both ack forms, once committed. */
  lifecycle?: Lifecycle;
  /** Each ack by id's outcome (acked, failed, late, unknown), for metrics of acks (not of transitions). */
  onAck?(result: AckOutcome): void;
  /** Once per connection, when its first ack that moved an actuation (acked, failed, or an `upTo` that matched) is recorded. */
  onFirstRecorded?(connection: DeviceConnection): void;
  /** Each retry of an ack (`retried`) and each ack given up (`dropped`), for metrics. */
  onDeferred?(what: AckDeferral): void;
  /** Acks waiting for the database, per instance. (Default: 10 000) */
  maxRetained?: number;
  /** Retry backoff, doubling from min to max, with jitter. (Default: 100, 5 000) */
  retryMinMs?: number;
  retryMaxMs?: number;
}

interface ConnectionAcks {
  /** This connection's acks not yet recorded or given up. */
  outstanding: Set<Promise<void>>;
  /** Its latest `upTo`, while it is not recorded: later acks by id wait for it. */
  upTo: Promise<void> | undefined;
  /** An ack of it moved an actuation (onFirstRecorded was called). */
  recorded: boolean;
}

export function makeAckHandler(options: AckHandlerOptions): AckHandler {
  const maxRetained = options.maxRetained ?? 10_000;
  const retryMinMs = options.retryMinMs ?? 100;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const mistakes = makeLogSampler(options.logger.child({ component: 'acks' }));
  // One flush at a time: acks are not on anyone's latency path, and bigger batches cost less.
  const batcher = makeBatcher<AckById, AckOutcome>((acks) => applyAcks(options.pool, acks, options.lifecycle), { maxBatchSize: 500, maxConcurrent: 1 });
  const byConnection = new WeakMap<DeviceConnection, ConnectionAcks>();
  const everything = new Set<Promise<void>>();
  const sleepers = new Set<() => void>();
  let retained = 0;
  let draining = false;

  function sleep(attempt: number): Promise<void> {
    const ms = Math.min(retryMaxMs, retryMinMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  }

  /** Runs `apply` until it succeeds or fails for a reason other than the database being away; undefined when given up. */
  async function untilRecorded<T>(connection: DeviceConnection, what: object, apply: () => Promise<T>): Promise<T | undefined> {
    let holding = false;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await apply();
        } catch (err) {
          if (!isDatabaseUnavailable(err)) {
            connection.log.error({ err, ...what }, 'device: ack not recorded (database error); the actuation stays sent');
            return undefined;
          }
          if (!holding && retained >= maxRetained) {
            options.onDeferred?.('dropped');
            connection.log.warn({ err, ...what, retained }, 'device: ack not recorded (database unavailable, retry buffer full); closing the socket so that its reconnect brings the actuation again');
            if (connection.state !== 'closed') {
              connection.send(reply(RESPONSE_CODES.SERVER_ERROR.code, CONTENT.serverError));
              connection.close(CLOSE_CODES.INTERNAL_ERROR.code, 'ack not recorded');
            }
            return undefined;
          }
          if (draining) {
            options.onDeferred?.('dropped');
            connection.log.warn({ err, ...what }, 'device: ack not recorded at shutdown (database unavailable); the actuation stays sent and goes out again when the device reconnects');
            return undefined;
          }
          if (!holding) {
            holding = true;
            retained++;
            connection.log.warn({ err, ...what }, 'device: ack not recorded yet (database unavailable); retrying');
          }
          options.onDeferred?.('retried');
          await sleep(attempt);
        }
      }
    } finally {
      if (holding) retained--;
    }
  }

  function track(state: ConnectionAcks, connection: DeviceConnection, recording: Promise<void>): Promise<void> {
    // Never rejects: later acks of the connection and drain() wait on it.
    const work = recording.catch((err: unknown) => connection.log.error({ err }, 'device: ack handling failed'));
    state.outstanding.add(work);
    everything.add(work);
    void work.finally(() => {
      state.outstanding.delete(work);
      everything.delete(work);
    });
    return work;
  }

  function firstRecorded(state: ConnectionAcks, connection: DeviceConnection): void {
    if (state.recorded) return;
    state.recorded = true;
    options.onFirstRecorded?.(connection);
  }

  function recordById(state: ConnectionAcks, connection: DeviceConnection, ack: AckById): Promise<void> {
    return untilRecorded(connection, { actuationId: ack.id }, () => batcher.add(ack)).then((result) => {
      if (!result) return;
      options.onAck?.(result);
      if (result.outcome === 'acked' || result.outcome === 'failed') firstRecorded(state, connection);
      if (result.outcome === 'unknown') {
        // A client mistake, the client's to repeat: sampled, and counted through onAck.
        mistakes.log('ack_unknown_actuation', 'warn', { deviceId: connection.deviceId, sessionId: connection.sessionId, actuationId: ack.id }, "device: ack for an actuation that is not this device's; ignored");
      } else if (result.outcome === 'late') {
        connection.log.info({ actuationId: ack.id }, 'device: late ack recorded; status unchanged');
      }
    });
  }

  return {
    async handle(connection, message) {
      const deviceId = connection.deviceId!;
      let state = byConnection.get(connection);
      if (!state) byConnection.set(connection, (state = { outstanding: new Set(), upTo: undefined, recorded: false }));
      const own = state;
      if ('upTo' in message) {
        // After this device's acks by id sent before it, which may still be waiting in a batch or for the database.
        const before = Promise.all([...state.outstanding]);
        const upTo = track(
          state,
          connection,
          before
            .then(() => untilRecorded(connection, { upTo: message.upTo }, () => ackUpTo(options.pool, deviceId, message.upTo, options.lifecycle)))
            .then((count) => {
              if (count !== undefined) connection.log.debug({ upTo: message.upTo, count }, 'device: acked up to seq');
              if (count) firstRecorded(own, connection);
            }),
        );
        const s = state;
        s.upTo = upTo;
        void upTo.finally(() => {
          if (s.upTo === upTo) s.upTo = undefined;
        });
        return;
      }
      // Not awaited: the device's next message (usually its next ack) is handled at once and
      // joins the same batch, instead of each ack of a device waiting for the one before to
      // commit. The outcome is only counted and logged.
      const ack: AckById = { deviceId, id: message.id, statusCode: message.statusCode, reasonPhrase: message.reasonPhrase ?? null };
      track(state, connection, state.upTo ? state.upTo.then(() => recordById(own, connection, ack)) : recordById(own, connection, ack));
    },
    async drain() {
      // Waiting acks get one last try now, and are given up if the database is still away.
      draining = true;
      for (const wake of [...sleepers]) wake();
      while (everything.size > 0) await Promise.all([...everything]);
      await batcher.drain();
    },
  };
}
