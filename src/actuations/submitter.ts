/**
 * The durable path into the queue (REST API and DSS rules alike). Concurrent
 * submissions share transactions through the batcher; each caller's promise
 * resolves only after its row is committed.
 *
 * Where the actuation goes next:
 * - its device is live on this instance with nothing queued: the same transaction
 *   records it as `sent` and it is written to the socket right after the commit (the
 *   device was reserved with the dispatcher for that, so no claim overtakes it);
 * - its device is connected here otherwise: the dispatcher is nudged and claims it;
 * - elsewhere or nowhere: one NOTIFY per batch wakes the instance that holds it.
 */
import { actuationId } from './actuation-ids.js';
import type { Pool } from '../db/pool.js';
import { makeBatcher } from '../db/batcher.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { ClaimedActuation } from './delivery-sql.js';
import type { Lifecycle } from './lifecycle.js';
import { insertActuations, type PreparedActuation } from './submit-sql.js';
import type { ActuationSubmitter, NewActuation, SubmitResult } from './types.js';

/** What the submitter needs of this instance's dispatcher. */
export interface LocalDelivery {
  isConnectedHere(deviceId: string): boolean;
  /** New actuations were queued for these devices (connected here or not). */
  nudge(deviceIds: string[]): void;
  /** Reserves the devices that can take a direct send now; returns their session ids. */
  reserveDirect(deviceIds: string[]): Map<string, number>;
  /**
   * Writes the actuations inserted as `sent` and ends the reservation (call it whatever happened).
   * `uncertain`: ids offered for a direct send in a transaction whose outcome is unknown (the
   * connection failed): it may have committed them as `sent`, so they are put back in the queue.
   */
  completeDirect(reserved: Map<string, number>, sent: ClaimedActuation[], uncertain?: string[]): void;
}

export interface SubmitterOptions {
  pool: Pool;
  instanceId: string;
  defaultTtlSeconds: number;
  maxQueuedPerDevice: number;
  maxBatchSize: number;
  /** Deadline of each batch's transaction (`DATABASE_TIMEOUT_MS`); past it the submissions fail with `BatchTimeoutError`. */
  flushTimeoutMs?: number;
  delivery: LocalDelivery;
  /** Told each committed batch's transitions (queued, direct sends, superseded). */
  lifecycle?: Lifecycle;
}

export interface Submitter extends ActuationSubmitter {
  drain(): Promise<void>;
}

/** No connection was had (refused, unresolvable, no pool slot in time): the statement never reached the database. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
function neverSent(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return (typeof e.code === 'string' && CONNECT_FAILURES.has(e.code)) || (typeof e.message === 'string' && e.message.includes('timeout exceeded when trying to connect'));
}

/** Deadlock, serialization failure, unique violation. */
const RETRYABLE = new Set(['40P01', '40001', '23505']);

export function makeSubmitter(options: SubmitterOptions): Submitter {
  const { pool } = options;

  async function flush(batch: PreparedActuation[]): Promise<SubmitResult[]> {
    const { delivery } = options;
    const deviceIds = [...new Set(batch.map((i) => i.deviceId))];
    const reserved = delivery.reserveDirect(deviceIds);
    // Set on the items themselves (the submitter's own objects, one flush at a time), not on
    // copies: also cleared, for an item retried in a split whose device is no longer reserved.
    for (const i of batch) i.sessionId = reserved.get(i.deviceId);
    const sent: ClaimedActuation[] = [];
    let uncertain: string[] | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const results = await insertActuations(
            pool,
            batch,
            { maxQueuedPerDevice: options.maxQueuedPerDevice, notifyDevices: deviceIds.filter((d) => !delivery.isConnectedHere(d)), instanceId: options.instanceId },
            options.lifecycle,
          );
          const queued = new Set<string>();
          results.forEach((r, i) => {
            if (r.outcome !== 'created') return;
            const item = batch[i]!;
            if (r.actuation.status === 'sent') sent.push(directlySent(item, r.actuation.seq, r.actuation.createdAt));
            else queued.add(item.deviceId);
          });
          // Every queued device, also those not connected here now: one may be opening its
          // session here, and the dispatcher remembers the nudge for it (nudge-log.ts).
          if (queued.size > 0) delivery.nudge([...queued]);
          return results;
        } catch (err) {
          // Deadlocks and (cross-instance) idempotency races are decided again with fresh locks.
          const code = (err as { code?: string }).code;
          if (!RETRYABLE.has(code ?? '') || attempt >= 3) {
            // The connection failed after the statement went out: the commit may have happened, the direct sends with it.
            if (reserved.size > 0 && isDatabaseUnavailable(err) && !neverSent(err)) uncertain = batch.filter((i) => reserved.has(i.deviceId)).map((i) => i.id);
            throw err;
          }
        }
      }
    } finally {
      if (reserved.size > 0) delivery.completeDirect(reserved, sent, uncertain);
    }
  }

  // Keyed by device: one device's actuations commit (and get their seq) in submission order.
  // Two flushes in flight: one commits while the next batch gathers. Four made batches half
  // as big and cost ~30% more PostgreSQL CPU per actuation; one left the commit wait idle
  // (bench: single POSTs 0.44x / 0.60x / 0.43x of bare with 4 / 2 / 1).
  // A batch that fails for one item's sake is split until only that item fails (see makeBatcher):
  // the edges validate what PostgreSQL refuses, and this keeps anything they miss one caller's error.
  const batcher = makeBatcher(flush, {
    maxBatchSize: options.maxBatchSize,
    maxConcurrent: 2,
    keyOf: (a: PreparedActuation) => a.deviceId,
    flushTimeoutMs: options.flushTimeoutMs,
  });

  return {
    submit(actuation: NewActuation) {
      return batcher.add(prepare(actuation, options.defaultTtlSeconds));
    },
    drain: () => batcher.drain(),
  };
}

function directlySent(item: PreparedActuation, seq: number, createdAt: Date): ClaimedActuation {
  return {
    id: item.id,
    deviceId: item.deviceId,
    seq,
    sessionId: item.sessionId!,
    accountId: item.accountId,
    gatewayId: item.gatewayId,
    componentId: item.componentId,
    command: item.command,
    params: item.params,
    createdAt,
    sourceKind: item.source.kind,
  };
}

function prepare(a: NewActuation, defaultTtlSeconds: number): PreparedActuation {
  return {
    // Time-ordered ids: primary-key inserts land on the index's last pages (bench/experiments/uuid-v7.sql).
    id: actuationId(),
    deviceId: a.deviceId,
    componentId: a.componentId,
    command: a.command,
    params: a.params,
    accountId: a.accountId ?? null,
    gatewayId: a.gatewayId ?? a.deviceId,
    ttlSeconds: a.ttlSeconds ?? defaultTtlSeconds,
    ackTimeoutSeconds: a.ackTimeoutSeconds ?? null,
    collapseKey: a.collapseKey ?? null,
    idempotencyKey: a.idempotencyKey ?? null,
    source: a.source,
    sessionId: undefined,
  };
}
