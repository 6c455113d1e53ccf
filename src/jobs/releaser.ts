/**
 * Runs jobs on this instance: starts the ones that are due, and releases the targets of
 * the jobs it holds, one actuation per target through the submitter (the durable path
 * every actuation takes), paced to the job's `maxPerMinute`.
 *
 * Modes of a held job (one loop per job):
 * - releasing: a page of pending targets, in device order, every time the pace allows one
 *   (at least RELEASE_GAP_MS apart: at 6,000/min that is a few targets per page, so releases
 *   are even, never a burst at a minute boundary); no `maxPerMinute`: pages of
 *   PAGE_SIZE back to back, two in flight (the next is read and submitted while the
 *   previous one commits), as fast as the submitter commits them;
 * - watching: every target released; waiting for the actuations to end (progress checked
 *   every poll) to complete the job;
 * - finalizing: the job was cancelled or aborted (here, or on another instance): after
 *   this loop's last page, its queued actuations are cancelled, then it is let go.
 *
 * Exactly one instance holds a job: a lease row (`lease_owner`, `lease_until`) taken with
 * SKIP LOCKED and renewed every poll. Pacing starts afresh at each takeover (no catch-up
 * burst), so the rate holds for the job whatever the number of instances. An instance that
 * dies (SIGKILL) only pauses its jobs: its leases run out after `leaseMs` and the next poll
 * of another instance takes them over. Whatever the crash, the idempotency key
 * `job:<jobId>:<deviceId>` makes a repeated release return the existing actuation, so no
 * device gets two actuations of one job.
 *
 * Memory: at most two pages (2 × PAGE_SIZE targets) per held job are in memory at a time;
 * targets are read from the database page by page.
 */
import type { ActuationSource, ActuationSubmitter, NewActuation, SubmitResult } from '../actuations/types.js';
import { cancelQueuedOfJob } from '../actuations/transitions-sql.js';
import type { Lifecycle } from '../actuations/lifecycle.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import { withTransaction, type Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import * as sql from './jobs-sql.js';
import type { JobState } from './schemas.js';

/**
 * Targets read and submitted at once (also the most a paced page holds). 200, not 500: a page's
 * garbage is collected sooner, which kept the releasing instance's peak RSS for a 100,000-target
 * job at +31 to +39 MiB instead of +83 to +88 (README, jobs bench) with no measurable loss of speed.
 */
const PAGE_SIZE = 200;
/** Shortest time between two paced pages: keeps statements per actuation low at high rates. */
const RELEASE_GAP_MS = 25;
/** Jobs one instance holds at once; more wait for another instance or a free slot. */
const MAX_HELD_JOBS = 10;
/** Due jobs started per poll. */
const MAX_STARTS_PER_POLL = 20;

export interface JobReleaserOptions {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  submitter: ActuationSubmitter;
  /** How often due jobs, leases and progress are looked at (`JOBS_POLL_MS`). */
  pollMs: number;
  /** How long a lease lasts without renewal (`JOBS_LEASE_MS`). */
  leaseMs: number;
  /** Told about the actuations a stop cancelled (after the commit). */
  lifecycle?: Lifecycle;
}

export interface JobReleaser {
  /** Job ids this instance holds now. */
  held(): string[];
  /** Looks for due jobs now (after a POST with no startAt). */
  poke(): void;
  /** Stops every loop after its current page and lets go of the leases. */
  stop(): Promise<void>;
}

/** A job's actuation, source and idempotency key prefix, shared by all its targets (never mutated). */
interface ReleaseTemplate {
  actuation: Omit<NewActuation, 'deviceId' | 'source' | 'idempotencyKey'>;
  source: ActuationSource;
  keyPrefix: string;
}

/** How a page's release ended (see `releasePage`). */
interface PageOutcome {
  undecided: boolean;
  error?: unknown;
}

interface Held {
  job: sql.LeasedJob;
  state: JobState;
  /** The lease was not renewed (taken over, or the database was out too long): stop releasing. */
  lost: boolean;
  done: Promise<void>;
}

export function startJobReleaser(options: JobReleaserOptions): JobReleaser {
  const { pool, instanceId, pollMs, leaseMs } = options;
  const log = options.logger.child({ component: 'jobs' });
  const held = new Map<string, Held>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  const wakers = new Set<() => void>();

  /** Sleeps up to `ms`; `stop()` wakes it. */
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(t);
        wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      wakers.add(wake);
    });

  async function tick(): Promise<void> {
    try {
      for (let i = 0; i < MAX_STARTS_PER_POLL && !stopped; i++) {
        const started = await withTransaction(pool, (client) => sql.startDueJob(client));
        if (!started) break;
        log.info({ jobId: started }, 'jobs: job started');
      }
      if (held.size > 0) {
        const kept = await sql.renewJobLeases(pool, instanceId, leaseMs, [...held.keys()]);
        for (const [id, entry] of held) {
          const state = kept.get(id);
          if (state === undefined) entry.lost = true;
          else entry.state = state;
        }
      }
      if (!stopped && held.size < MAX_HELD_JOBS) {
        for (const job of await sql.acquireJobLeases(pool, instanceId, leaseMs, MAX_HELD_JOBS - held.size)) {
          if (stopped) break;
          log.info({ jobId: job.id, state: job.state }, 'jobs: holding job');
          const entry: Held = { job, state: job.state, lost: false, done: Promise.resolve() };
          held.set(job.id, entry);
          entry.done = runJob(entry).then(
            () => void held.delete(job.id),
            (err: unknown) => {
              held.delete(job.id);
              log.error({ err, jobId: job.id }, 'jobs: release loop failed; the lease runs out and the job is taken up again');
            },
          );
        }
      }
    } catch (err) {
      // The database is out or slow: leases that are not renewed run out, and the next poll tries again.
      if (!isDatabaseUnavailable(err)) log.error({ err }, 'jobs: poll failed');
      else log.warn({ err }, 'jobs: poll failed (database unavailable)');
    }
  }

  function schedule(delay: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      ticking = tick().finally(() => {
        ticking = undefined;
        schedule(pollMs);
      });
    }, delay);
  }

  /**
   * What every target of a job shares, built once per held job: each target then adds only its
   * device id and idempotency key (no source object nor key template per target: fewer
   * allocations per page; README "Jobs against the bulk endpoint").
   */
  function releaseTemplate(job: sql.LeasedJob): ReleaseTemplate {
    const a = job.actuation as Omit<NewActuation, 'deviceId' | 'source' | 'idempotencyKey'>;
    return {
      // Copied field by field: the object parsed from jsonb is slow to spread (see submitTarget).
      actuation: { componentId: a.componentId, command: a.command, params: a.params, accountId: a.accountId, gatewayId: a.gatewayId, ttlSeconds: a.ttlSeconds, ackTimeoutSeconds: a.ackTimeoutSeconds, collapseKey: a.collapseKey },
      source: { kind: 'job', jobId: job.id, cause: job.createdBy },
      keyPrefix: `job:${job.id}:`,
    };
  }

  async function submitTarget(job: sql.LeasedJob, template: ReleaseTemplate, deviceId: string): Promise<sql.Release | undefined> {
    let result: SubmitResult;
    try {
      const a = template.actuation;
      // Named fields, not a spread of the template: the spread was the largest single allocation
      // of a release (2 KiB a target in a sampling heap profile; README "Jobs against the bulk endpoint").
      result = await options.submitter.submit({
        deviceId,
        componentId: a.componentId,
        command: a.command,
        params: a.params,
        accountId: a.accountId,
        gatewayId: a.gatewayId,
        ttlSeconds: a.ttlSeconds,
        ackTimeoutSeconds: a.ackTimeoutSeconds,
        collapseKey: a.collapseKey,
        idempotencyKey: template.keyPrefix + deviceId,
        source: template.source,
      });
    } catch (err) {
      // Not this target's fault: left pending, released again on a later page.
      if (isDatabaseUnavailable(err)) return undefined;
      const code = (err as { code?: unknown }).code;
      log.warn({ err, jobId: job.id }, 'jobs: the database refused a target; recorded as refused');
      return { deviceId, actuationId: null, refused: `REFUSED${typeof code === 'string' ? `:${code.slice(0, 16)}` : ''}` };
    }
    if (result.outcome === 'queue_full') return { deviceId, actuationId: null, refused: 'QUEUE_FULL' };
    return { deviceId, actuationId: result.actuation.id, refused: null };
  }

  /**
   * Aborts or completes the job when its counts say so; returns its state afterwards and what is left to release.
   * `growing`: a continuous job before its end, which never completes by itself.
   */
  async function checkProgress(job: sql.LeasedJob, growing: boolean): Promise<{ state: JobState; notReleased: number }> {
    const counts = await sql.jobCounts(pool, job.id);
    // Refused targets (no actuation: the device's queue was full) count as completed and failed.
    const completed = sql.FINAL_STATUSES.reduce((n, s) => n + counts[s], 0) + counts.refused + counts.deleted;
    const failed = counts.failed + counts.timed_out + counts.refused;
    let to: 'aborted' | 'completed' | undefined;
    let reason: string | null = null;
    if (job.abortFailedPercent !== null && job.abortMinCompleted !== null && completed >= job.abortMinCompleted && failed * 100 >= job.abortFailedPercent * completed) {
      const percent = Math.round((failed * 1000) / completed) / 10;
      to = 'aborted';
      reason = `failed + timed_out ${failed} of ${completed} completed (${percent}%) reached abort.failedPercent ${job.abortFailedPercent}%`;
    } else if (!growing && counts.notReleased === 0 && counts.queued === 0 && counts.sent === 0) {
      to = 'completed';
    }
    const { notReleased } = counts;
    if (to === undefined) return { state: 'running', notReleased };
    // Not running any more: stopped meanwhile by a cancel (the only other way out of running).
    if (!(await sql.stopJob(pool, job.id, ['running'], to, reason, to === 'aborted' ? `instance:${instanceId}` : null))) return { state: 'cancelled', notReleased };
    log.info({ jobId: job.id, reason }, `jobs: job ${to}`);
    return { state: to, notReleased };
  }

  /**
   * Submits a page and records it released. Never rejects (a page may still be in flight when
   * the loop stops or fails): `error` is what the loop rethrows; `undecided`: some targets were
   * left pending (the database was out), to be released again on a later pass.
   */
  async function releasePage(job: sql.LeasedJob, template: ReleaseTemplate, page: string[]): Promise<PageOutcome> {
    try {
      const releases = await Promise.all(page.map((deviceId) => submitTarget(job, template, deviceId)));
      const decided = releases.filter((r): r is sql.Release => r !== undefined);
      try {
        await sql.markReleased(pool, job.id, decided);
      } catch (err) {
        // Unmarked targets are submitted again later and get their existing actuations back.
        if (!isDatabaseUnavailable(err)) throw err;
      }
      return { undecided: decided.length < page.length };
    } catch (error) {
      return { undecided: true, error };
    }
  }

  async function runJob(entry: Held): Promise<void> {
    const { job } = entry;
    const rate = job.maxPerMinute;
    const template = releaseTemplate(job);
    // Pacing starts now: a takeover continues at the job's rate, without catching up what the pause missed.
    let anchorAt = Date.now();
    let releasedHere = 0;
    let lastCheck = 0;
    let allReleased = false;
    // A continuous filter adds the devices that match by now at every check, until its end_at.
    const filter = job.target.kind === 'filter' && job.target.continuous ? job.target : null;
    let growing = filter !== null;
    // Unpaced: the next page is read (after `cursor`) and submitted while `inFlight` commits, so the
    // submitter's two flushes are both busy (README "Jobs against the bulk endpoint"). The cursor keeps
    // the page in flight out of the next one; when a pass finds nothing after it, it starts again from
    // the first device (targets a failed page left pending, devices a continuous job added).
    let cursor: string | null = null;
    let inFlight: Promise<PageOutcome> | undefined;
    /** Waits for the page in flight; rethrows its failure, and backs off when it left targets pending. */
    const settleInFlight = async () => {
      if (!inFlight) return;
      const outcome = await inFlight;
      inFlight = undefined;
      if (outcome.error !== undefined) throw outcome.error;
      if (outcome.undecided) await sleep(pollMs);
    };
    try {
      while (!stopped && !entry.lost && entry.state === 'running') {
        const now = Date.now();
        if (now - lastCheck >= pollMs) {
          lastCheck = now;
          try {
            if (growing && filter) {
              const pass = await sql.addContinuousTargets(pool, job.id, instanceId, filter, job.accounts);
              if (pass.added > 0) log.info({ jobId: job.id, added: pass.added }, 'jobs: continuous job targets devices that match now');
              // Past end_at it grows no more and completes as a snapshot job does (a stop or a takeover: the check or renewal tells).
              growing = !pass.ended;
            }
            const progress = await checkProgress(job, growing);
            entry.state = progress.state;
            if (entry.state !== 'running') break;
            // An empty page while the lease could not be renewed (the database was out) is not the end.
            // (A page in flight is counted as not released yet: the next check tells.)
            allReleased = progress.notReleased === 0;
          } catch (err) {
            if (!isDatabaseUnavailable(err)) throw err;
            await sleep(pollMs);
            continue;
          }
        }
        if (allReleased) {
          await settleInFlight();
          await sleep(Math.max(0, lastCheck + pollMs - Date.now()));
          continue;
        }
        let limit = PAGE_SIZE;
        if (rate !== null) {
          let due = Math.floor(((now - anchorAt) * rate) / 60_000) - releasedHere;
          // Never more than a second's worth at once (after a stall of this loop or the database), so the pace stays even.
          const maxBurst = Math.max(1, Math.ceil(rate / 60));
          if (due > maxBurst) {
            anchorAt = now - ((releasedHere + maxBurst) * 60_000) / rate;
            due = maxBurst;
          }
          if (due <= 0) {
            const nextAt = anchorAt + ((releasedHere + 1) * 60_000) / rate;
            await sleep(Math.min(pollMs, Math.max(RELEASE_GAP_MS, nextAt - now)));
            continue;
          }
          limit = Math.min(due, PAGE_SIZE);
        }
        let page: string[];
        try {
          page = await sql.pendingTargets(pool, job.id, instanceId, limit, cursor);
        } catch (err) {
          if (!isDatabaseUnavailable(err)) throw err;
          await settleInFlight();
          await sleep(pollMs);
          continue;
        }
        if (page.length === 0) {
          await settleInFlight();
          if (cursor !== null) {
            cursor = null;
            continue;
          }
          // Everything released, or the job stopped or the lease ran out: the next progress check or renewal tells.
          allReleased = true;
          continue;
        }
        const submitted = releasePage(job, template, page);
        releasedHere += page.length;
        if (rate === null) {
          // At most two pages in flight: this one, and the previous one until it has committed.
          cursor = page[page.length - 1]!;
          await settleInFlight();
          inFlight = submitted;
        } else {
          inFlight = submitted;
          await settleInFlight();
          await sleep(RELEASE_GAP_MS);
        }
      }
    } finally {
      // Stopping or failing: the page in flight ends first (it never rejects).
      if (inFlight) await inFlight;
    }
    if (stopped || entry.lost) return;
    if (entry.state === 'cancelled' || entry.state === 'aborted') await finalize(job.id);
    else await sql.releaseJobLeases(pool, instanceId, [job.id]);
  }

  /** After this instance's last page of a stopped job: its queued actuations are cancelled, and it is let go. */
  async function finalize(jobId: string): Promise<void> {
    const cancelled = await cancelQueuedOfJob(pool, jobId, options.lifecycle);
    await sql.markFinalized(pool, jobId, instanceId);
    log.info({ jobId, cancelled }, 'jobs: stopped job finalized');
  }

  schedule(0);

  return {
    held: () => [...held.keys()],
    poke() {
      if (stopped || ticking) return;
      clearTimeout(timer);
      schedule(0);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      for (const wake of [...wakers]) wake();
      await ticking;
      const ids = [...held.keys()];
      await Promise.all([...held.values()].map((e) => e.done));
      // Let go at once: another instance takes the jobs over at its next poll instead of after the lease.
      if (ids.length > 0) await sql.releaseJobLeases(pool, instanceId, ids).catch((err: unknown) => log.warn({ err }, 'jobs: could not let go of the leases; they run out'));
    },
  };
}
