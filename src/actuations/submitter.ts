/**
 * The durable path into the queue (REST API and DSS rules alike). Concurrent
 * submissions share transactions through the batcher; each caller's promise
 * resolves only after its row is committed. Devices connected to this instance
 * are nudged directly; the others through one NOTIFY per batch.
 */
import crypto from 'node:crypto';
import type { Pool } from '../db/pool.js';
import { makeBatcher } from '../db/batcher.js';
import { insertActuations, type PreparedActuation } from './submit-sql.js';
import type { ActuationSubmitter, NewActuation, SubmitResult, TransitionObserver } from './types.js';

export interface SubmitterOptions {
  pool: Pool;
  defaultTtlSeconds: number;
  maxQueuedPerDevice: number;
  maxBatchSize: number;
  /** Devices connected to this instance get a direct nudge and no NOTIFY. */
  isConnectedHere(deviceId: string): boolean;
  nudgeLocal(deviceIds: string[]): void;
  onTransition?: TransitionObserver;
}

export interface Submitter extends ActuationSubmitter {
  drain(): Promise<void>;
}

/** Deadlock, serialization failure, unique violation. */
const RETRYABLE = new Set(['40P01', '40001', '23505']);

export function makeSubmitter(options: SubmitterOptions): Submitter {
  const { pool } = options;

  async function flush(items: PreparedActuation[]): Promise<SubmitResult[]> {
    const deviceIds = [...new Set(items.map((i) => i.deviceId))];
    for (let attempt = 1; ; attempt++) {
      try {
        const { results, supersededSourceKinds } = await insertActuations(pool, items, {
          maxQueuedPerDevice: options.maxQueuedPerDevice,
          notifyDevices: deviceIds.filter((d) => !options.isConnectedHere(d)),
        });
        // Counted after the commit only: a rolled-back batch changed nothing.
        results.forEach((r, i) => r.outcome === 'created' && options.onTransition?.('queued', items[i]!.source.kind));
        for (const kind of supersededSourceKinds) options.onTransition?.('superseded', kind);
        const created = results.flatMap((r) => (r.outcome === 'created' ? [r.actuation.deviceId] : []));
        if (created.length > 0) options.nudgeLocal([...new Set(created)].filter(options.isConnectedHere));
        return results;
      } catch (err) {
        // Deadlocks and (cross-instance) idempotency races are decided again with fresh locks.
        const code = (err as { code?: string }).code;
        if (!RETRYABLE.has(code ?? '') || attempt >= 3) throw err;
      }
    }
  }

  // Keyed by device: one device's actuations commit (and get their seq) in submission order.
  const batcher = makeBatcher(flush, { maxBatchSize: options.maxBatchSize, maxConcurrent: 4, keyOf: (a: PreparedActuation) => a.deviceId });

  return {
    submit(actuation: NewActuation) {
      return batcher.add(prepare(actuation, options.defaultTtlSeconds));
    },
    drain: () => batcher.drain(),
  };
}

function prepare(a: NewActuation, defaultTtlSeconds: number): PreparedActuation {
  return {
    id: crypto.randomUUID(),
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
  };
}
