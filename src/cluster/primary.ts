/**
 * `WORKERS` > 1: the primary of a `node:cluster` on one port. It prepares once what
 * workers would otherwise race over (the embedded PostgreSQL, migrations, generated keys
 * and credentials), forks one worker per slot and supervises them. It serves nothing
 * itself; the port is shared and connections are handed to workers round-robin.
 *
 * Each worker is a full instance of the multi-instance design (its own instance id
 * `<INSTANCE_ID>-w<index>`, sessions, LISTEN connection, share of the DSS streams, job
 * leases), so a worker that dies is, to the others, an instance that died: its devices
 * reconnect through the port to the live workers and get their actuations there.
 *
 * Restarts: a worker that exits unasked is forked again in its slot (same index, same
 * instance id, so the new one closes at once the sessions the dead one left open) after
 * a backoff that doubles with that slot's restarts in the last minute
 * (RESTART_BACKOFF_MIN_MS .. RESTART_BACKOFF_MAX_MS). A death after
 * `WORKER_MAX_RESTARTS_PER_MINUTE` restarts across all slots within the last minute
 * means something is wrong beyond one worker: the primary stops the rest and exits 1.
 *
 * Shutdown: SIGTERM/SIGINT are forwarded (the same signal, so that a terminal's Ctrl-C,
 * which reaches the workers too, is taken as one request) and each worker drains in the
 * order `App.close` follows; the primary exits once all have, 0 when all exited 0. It waits
 * at most SHUTDOWN_TIMEOUT_MS plus SHUTDOWN_GRACE_MS (the workers' own deadline, plus
 * time for their exit to arrive), then SIGKILLs what is left and exits 1.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import { serveClusterMetrics } from './cluster-metrics.js';
import { isMessage } from './ipc-message.js';

export const RESTART_BACKOFF_MIN_MS = 250;
export const RESTART_BACKOFF_MAX_MS = 30_000;
const RESTART_WINDOW_MS = 60_000;
const SHUTDOWN_GRACE_MS = 5_000;
/** See SIGNAL_ECHO_MS in main.ts: the same signal again this soon is the terminal's echo. */
const SIGNAL_ECHO_MS = 1000;

/** What a worker sends the primary once its server listens. */
export interface WorkerListening {
  type: 'iotws:listening';
  port: number;
}

export function isWorkerListening(message: unknown): message is WorkerListening {
  return isMessage<WorkerListening>(message, 'iotws:listening');
}

export interface Prepared {
  /** Handed to every worker as DATABASE_URL (the embedded database's); undefined: workers use their configured one. */
  databaseUrl?: string;
  /** Stops what `prepare` started (the embedded database), after the last worker exited. */
  stop(): Promise<void>;
}

export interface PrimaryOptions {
  config: Config;
  logger: Logger;
  /** Runs once before any worker is forked. */
  prepare(): Promise<Prepared>;
  /** Logs a start-up failure the way a single instance does (cause and hint at fatal level). */
  reportStartupFailure(err: unknown): void;
}

interface Slot {
  index: number;
  worker?: Worker;
  /** Restarts of this slot, for its backoff. */
  restarts: number[];
  restartTimer?: NodeJS.Timeout;
  listening: boolean;
}

export function runPrimary(options: PrimaryOptions): void {
  const { config } = options;
  const logger = options.logger.child({ component: 'cluster' });
  const slots: Slot[] = Array.from({ length: config.workers }, (_, index) => ({ index, restarts: [], listening: false }));
  const allRestarts: number[] = [];
  let prepared: Prepared | undefined;
  let stopping = false;
  let exitCode = 0;
  let allListeningLogged = false;
  let firstSignal: { signal: NodeJS.Signals; at: number } | undefined;

  const live = () => slots.filter((s) => s.worker !== undefined);
  serveClusterMetrics();

  let finishing = false;
  const finish = async () => {
    if (finishing) return;
    finishing = true;
    await prepared?.stop().catch((err: unknown) => {
      logger.error({ err }, 'cluster: could not stop the embedded database');
      exitCode = 1;
    });
    logger.info({ exitCode }, 'cluster: stopped');
    process.exit(exitCode);
  };

  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const slot of slots) clearTimeout(slot.restartTimer);
    const deadline = setTimeout(() => {
      logger.error({ workers: live().map((s) => s.index) }, 'cluster: workers did not stop within the deadline; killing them');
      for (const slot of live()) slot.worker!.process.kill('SIGKILL');
      exitCode = 1;
      void finish();
    }, config.shutdownTimeoutMs + SHUTDOWN_GRACE_MS);
    deadline.unref();
    if (live().length === 0) return void finish();
    for (const slot of live()) slot.worker!.process.kill(signal);
  };

  const fork = (slot: Slot) => {
    slot.restartTimer = undefined;
    if (stopping) return;
    const worker = cluster.fork({
      WORKER_INDEX: String(slot.index),
      // The primary's id (its default names the primary's pid), so that workers' ids are derived from one name.
      INSTANCE_ID: config.instanceId,
      ...(prepared?.databaseUrl === undefined ? {} : { DATABASE_URL: prepared.databaseUrl }),
    });
    slot.worker = worker;
    slot.listening = false;
    logger.info({ workerIndex: slot.index, workerPid: worker.process.pid }, 'cluster: worker started');
    worker.on('message', (message: unknown) => {
      if (!isWorkerListening(message)) return;
      slot.listening = true;
      if (!allListeningLogged && slots.every((s) => s.listening)) {
        allListeningLogged = true;
        logger.info({ port: message.port, workers: slots.length }, 'cluster: all workers listening');
      }
    });
    worker.on('exit', (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    slot.listening = false;
    if (stopping) {
      if (code !== 0) exitCode = 1;
      logger.info({ workerIndex: slot.index, workerPid: worker.process.pid, code, signal }, 'cluster: worker stopped');
      if (live().length === 0) void finish();
      return;
    }
    const now = Date.now();
    const recent = (times: number[]) => times.filter((t) => now - t < RESTART_WINDOW_MS);
    allRestarts.splice(0, allRestarts.length, ...recent(allRestarts));
    slot.restarts = recent(slot.restarts);
    if (allRestarts.length >= config.workerMaxRestartsPerMinute) {
      logger.fatal(
        { workerIndex: slot.index, workerPid: worker.process.pid, code, signal, restartsInLastMinute: allRestarts.length, limit: config.workerMaxRestartsPerMinute },
        'cluster: worker died and the restart limit is reached (WORKER_MAX_RESTARTS_PER_MINUTE); stopping the other workers and exiting',
      );
      exitCode = 1;
      stopAll('SIGTERM');
      return;
    }
    const delayMs = Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS * 2 ** slot.restarts.length);
    allRestarts.push(now);
    slot.restarts.push(now);
    logger.error(
      { workerIndex: slot.index, workerPid: worker.process.pid, code, signal, restartInMs: delayMs, restartsInLastMinute: allRestarts.length },
      'cluster: worker died; restarting it',
    );
    slot.restartTimer = setTimeout(() => fork(slot), delayMs);
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignal?.signal === signal && Date.now() - firstSignal.at < SIGNAL_ECHO_MS) return;
    if (firstSignal || stopping) {
      // A second request (or a signal while stopping after the restart limit): the workers exit at once on theirs; so does everything after them.
      logger.warn({ signal }, 'cluster: second signal, workers exit now');
      exitCode = 1;
      for (const slot of live()) slot.worker!.process.kill(signal);
      return;
    }
    firstSignal = { signal, at: Date.now() };
    logger.info({ signal, workers: live().length }, 'cluster: shutting down; workers drain');
    // Before prepare finished, nothing is forked yet: its continuation sees `stopping`.
    if (prepared) stopAll(signal);
    else stopping = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  void (async () => {
    try {
      prepared = await options.prepare();
    } catch (err) {
      options.reportStartupFailure(err);
      process.exit(1);
    }
    if (stopping) return void finish();
    logger.info({ workers: slots.length, embeddedDatabase: prepared.databaseUrl !== undefined }, 'cluster: starting workers');
    for (const slot of slots) fork(slot);
  })();
}
