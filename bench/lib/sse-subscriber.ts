/**
 * One change-feed subscriber for the actuations bench (`--sse`): bench/sse-client.ts in
 * a child process of its own (so the bench process's work never delays its reads),
 * taking every event, reconnecting with `Last-Event-ID` when the server drops it.
 *
 * Latencies: `takeArrivals` gives, per event recorded, its arrival time and its `at` (the
 * transaction's start); `commitLatencies` joins the ids to their commit timestamps
 * (`pg_xact_commit_timestamp` of the event row's xmin: the transaction that made the
 * transition; needs `track_commit_timestamp = on`, which the bench's embedded cluster has).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { SseArrival, SseClientReply, SseClientRequest } from '../sse-client.js';
import { request } from './ipc.js';
import { forkClient, killChild } from './processes.js';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'sse-client.ts');

export interface BenchSseSubscriber {
  record(on: boolean): Promise<SseArrival[]>;
  /** Resolves once `count` events arrived in all (bounded by `timeoutMs`). */
  waitForCount(count: number, timeoutMs: number): Promise<{ ok: boolean; events: number; reconnects: number }>;
  close(): Promise<void>;
}

export async function startBenchSseSubscriber(origin: string, authorization: string): Promise<BenchSseSubscriber> {
  const child = forkClient(SCRIPT);
  const ask = <Op extends SseClientReply['op']>(message: SseClientRequest, expected: Op, timeoutMs: number) =>
    request<Op, SseClientReply, SseClientRequest>(child, message, expected, timeoutMs);
  try {
    await ask({ op: 'start', origin, authorization }, 'started', 30_000);
  } catch (err) {
    await killChild(child);
    throw err;
  }
  return {
    record: async (on) => (await ask({ op: 'record', on }, 'recorded', 30_000)).arrivals,
    async waitForCount(count, timeoutMs) {
      const { ok, events, reconnects } = await ask({ op: 'wait', count, timeoutMs }, 'waited', timeoutMs + 30_000);
      return { ok, events, reconnects };
    },
    close: () => killChild(child),
  };
}

/** Whether the database records commit timestamps (a server setting: needs a restart to change). */
export async function tracksCommitTimestamps(url: string): Promise<boolean> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<{ track_commit_timestamp: string }>('show track_commit_timestamp')).rows[0]!.track_commit_timestamp === 'on';
  } finally {
    await client.end();
  }
}

/** Committed → arrived (ms) for each arrival, from the event row's commit timestamp. */
export async function commitLatencies(url: string, arrivals: readonly SseArrival[]): Promise<number[]> {
  if (arrivals.length === 0) return [];
  const ids = arrivals.map((a) => a.id);
  const from = Math.min(...ids);
  const to = Math.max(...ids);
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string; committed_ms: number | null }>(
      `select e.id, extract(epoch from pg_xact_commit_timestamp(r.xmin)) * 1000 as committed_ms
         from events_after($1, $2, $3) e join event_rows r on r.pos = e.pos`,
      [from - 1, to, to - from + 1],
    );
    const committed = new Map(rows.map((r) => [Number(r.id), r.committed_ms === null ? Number.NaN : Number(r.committed_ms)]));
    return arrivals.map((a) => a.arrivedMs - committed.get(a.id)!).filter(Number.isFinite);
  } finally {
    await client.end();
  }
}
