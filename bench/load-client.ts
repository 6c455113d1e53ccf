/**
 * The HTTP load generator of the actuations bench: a child process (IPC channel
 * only) with one `undici` Pool of a fixed number of keep-alive connections to
 * 127.0.0.1, so connection set-up never shows up in the figures (Node's global
 * fetch opening connections at will gave multi-second p99 even against a bare
 * express handler here).
 *
 *   {op:'run', ...LoadRun} -> {op:'ran', ...LoadResult}
 *
 * Every actuation carries a `t` param: its scheduled send time (ms,
 * performance.timeOrigin + performance.now()); devices compute latency from it.
 * - closed: `total` actuations as fast as `inFlight` outstanding requests allow;
 *   t = the moment the request is handed to the pool.
 * - open: `total` actuations at `rate`/s on a fixed schedule, whatever the answers
 *   do (requests queue in the pool when every connection is busy); t = the
 *   scheduled time, so queueing anywhere counts as latency.
 * With `bulk`, a request carries `bulk` items (POST /v1/actuations).
 * Bounded: `total` requests at most and `deadlineMs`, after which nothing more is sent.
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { exitWithParent } from './lib/ipc.js';

export interface LoadRun {
  origin: string;
  authorization: string;
  deviceIds: string[];
  connections: number;
  /** Actuations to send (bulk: rounded up to whole requests). */
  total: number;
  mode: { kind: 'closed'; inFlight: number } | { kind: 'open'; rate: number };
  /** Items per POST /v1/actuations; absent: one POST /v1/devices/:id/actuations per actuation. */
  bulk?: number;
  deadlineMs: number;
}

export interface LoadResult {
  requests: number;
  /** Actuations the server accepted (202/200; per item for bulk). */
  accepted: number;
  rejected: number;
  errors: Record<string, number>;
  firstSendMs: number;
  lastAnswerMs: number;
  /** Answer latency from the scheduled (open) or actual (closed) send, ms: sorted sample of at most 2,000. */
  answerSample: number[];
}

export type LoadRequest = { op: 'run' } & LoadRun;
export type LoadReply = ({ op: 'ran' } & LoadResult) | { op: 'error'; message: string };

const now = () => performance.timeOrigin + performance.now();

async function run(request: LoadRun): Promise<LoadResult> {
  const pool = new Pool(request.origin, { connections: request.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const deadline = Date.now() + request.deadlineMs;
  const perRequest = request.bulk ?? 1;
  const requests = Math.ceil(request.total / perRequest);
  const errors: Record<string, number> = {};
  const answers: number[] = [];
  let accepted = 0;
  let rejected = 0;
  let next = 0;
  let device = 0;
  let firstSendMs = Number.NaN;
  let lastAnswerMs = Number.NaN;
  const note = (reason: string, n = 1) => {
    rejected += n;
    if (reason in errors || Object.keys(errors).length < 10) errors[reason] = (errors[reason] ?? 0) + n;
  };

  async function send(t: number): Promise<void> {
    if (Number.isNaN(firstSendMs)) firstSendMs = t;
    const item = () => ({ componentId: 'bench', command: 'set', params: [{ name: 't', value: t }] });
    let path: string;
    let body: string;
    if (request.bulk) {
      const items = Array.from({ length: request.bulk }, () => ({ deviceId: request.deviceIds[device++ % request.deviceIds.length]!, ...item() }));
      path = '/v1/actuations';
      body = JSON.stringify(items);
    } else {
      path = `/v1/devices/${encodeURIComponent(request.deviceIds[device++ % request.deviceIds.length]!)}/actuations`;
      body = JSON.stringify(item());
    }
    try {
      const res = await pool.request({
        method: 'POST',
        path,
        body,
        headers: { 'content-type': 'application/json', authorization: request.authorization },
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      const text = await res.body.text();
      lastAnswerMs = now();
      answers.push(lastAnswerMs - t);
      if (request.bulk && res.statusCode === 200) {
        const { results } = JSON.parse(text) as { results: { status: number }[] };
        for (const r of results) {
          if (r.status === 202 || r.status === 200) accepted++;
          else note(`item ${r.status}`);
        }
      } else if (res.statusCode === 202 || res.statusCode === 200) {
        accepted++;
      } else {
        note(`HTTP ${res.statusCode}: ${text.slice(0, 120)}`, perRequest);
      }
    } catch (err) {
      note((err as Error).message, perRequest);
    }
  }

  try {
    if (request.mode.kind === 'closed') {
      const lanes = Math.max(1, Math.min(request.mode.inFlight, requests));
      await Promise.all(
        Array.from({ length: lanes }, async () => {
          while (next < requests && Date.now() < deadline) {
            next++;
            await send(now());
          }
        }),
      );
    } else {
      const intervalMs = (1000 * perRequest) / request.mode.rate;
      const start = now() + 5;
      const pending: Promise<void>[] = [];
      while (next < requests && Date.now() < deadline) {
        const due = Math.min(requests, Math.floor((now() - start) / intervalMs) + 1);
        while (next < due) pending.push(send(start + next++ * intervalMs));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await Promise.all(pending);
    }
    if (next < requests) note('bench deadline passed: not sent', (requests - next) * perRequest);
  } finally {
    await pool.close().catch(() => pool.destroy());
  }
  answers.sort((a, b) => a - b);
  const step = Math.max(1, Math.floor(answers.length / 2_000));
  return {
    requests: next,
    accepted,
    rejected,
    errors,
    firstSendMs,
    lastAnswerMs,
    answerSample: answers.filter((_, i) => i % step === 0 || i === answers.length - 1),
  };
}

process.on('message', (request: LoadRequest) => {
  void (async () => {
    try {
      if (request.op === 'run') process.send?.({ op: 'ran', ...(await run(request)) } satisfies LoadReply);
    } catch (err) {
      process.send?.({ op: 'error', message: (err as Error).stack ?? String(err) } satisfies LoadReply);
    }
  })();
});

exitWithParent();
