/**
 * Interval rules (the Task Service's interval-based tasks): a rule with `every`
 * evaluates its match against the devices' last known state (`dss_device_state`,
 * `dss_device_connectivity`) and submits its action for each device that matches, through
 * the same submitter as event rules.
 *
 * - One instance per evaluation: every instance polls every `pollMs`; a due rule is
 *   claimed with FOR UPDATE SKIP LOCKED and its `next_run_at` pushed a lease ahead
 *   (renewed per page), so the others pass it over. When done, the next evaluation is due
 *   one interval after this one started.
 * - Bounded memory: the state is read in pages of `pageSize` rows in (dsn, property)
 *   order, filtered in SQL; only the condition is tested here (`conditionHolds`, the
 *   event rules' comparison by `base_type`).
 * - Nothing twice: the idempotency key is `rule:<ruleId>:<evaluation>:<dsn>`. An
 *   evaluation whose instance died stays open; once its lease ran out another instance
 *   takes it up with the same number, and a device it fired at already gets the same
 *   actuation back. A fired device starts the rule's cooldown (`dss_interval_fired`), in
 *   which later evaluations count it as matched but do not fire.
 * - Counts (matched devices, fired devices) are written when the evaluation finishes;
 *   an evaluation taken up after a crash counts from its start again.
 */
import type { ActuationSubmitter } from '../actuations/types.js';
import { isDataError } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { findUnstorable } from '../db/storable.js';
import type { Logger } from '../logger.js';
import type { DssEvent } from './events.js';
import * as intervalSql from './interval-sql.js';
import { canonicalValue, conditionHolds, renderActuation } from './rules.js';

/** How long a claimed evaluation keeps others off, renewed per page. */
const LEASE_SECONDS = 60;

/** One evaluation this instance ran to its end (`finished`), or that failed (taken up again after its lease). */
export type IntervalEvaluationReport = { outcome: 'finished'; ruleId: string; matched: number; fired: number; seconds: number } | { outcome: 'failed'; ruleId: string };

export interface IntervalTasksOptions {
  pool: Pool;
  logger: Logger;
  submitter: ActuationSubmitter;
  instanceId: string;
  /** How often each instance looks for a due rule. (Default: 1 000) */
  pollMs: number;
  /** State rows read per page. (Default: 500) */
  pageSize?: number;
  /** Told about each evaluation that finished or failed here (metrics); one stopped by shutdown is neither. */
  onEvaluated?(report: IntervalEvaluationReport): void;
}

export interface IntervalTasks {
  /** Evaluates every due rule now (the poll does the same); resolves with how many it evaluated. */
  runDue(): Promise<number>;
  stop(): Promise<void>;
}

export function startIntervalTasks(options: IntervalTasksOptions): IntervalTasks {
  const { pool, submitter } = options;
  const log = options.logger.child({ component: 'dss-interval' });
  const pageSize = options.pageSize ?? 500;
  let stopped = false;
  let running: Promise<number> | undefined;

  async function evaluate(claim: intervalSql.ClaimedEvaluation): Promise<void> {
    const startedAt = performance.now();
    const rule = { id: claim.ruleId, action: claim.action };
    let matched = 0;
    let fired = 0;
    let lastDsn: string | undefined;
    let after: { dsn: string; propertyName: string } | undefined;
    for (;;) {
      const rows = await intervalSql.stateRowsPage(pool, claim.ruleId, claim.match, claim.cooldownSeconds, after, pageSize);
      const firing: Promise<string | undefined>[] = [];
      for (const row of rows) {
        // Several properties of one device may match (no propertyName): the device counts once.
        if (row.dsn === lastDsn) continue;
        const value = canonicalValue(row.value, row.baseType);
        if (!conditionHolds(claim.match.condition, value, row.baseType)) continue;
        lastDsn = row.dsn;
        matched++;
        if (row.coolingDown) continue;
        firing.push(fire(claim, rule, row));
      }
      const firedDsns = (await Promise.all(firing)).filter((d): d is string => d !== undefined);
      fired += firedDsns.length;
      await intervalSql.markFired(pool, claim.ruleId, firedDsns);
      if (rows.length < pageSize || stopped) break;
      const last = rows[rows.length - 1]!;
      after = { dsn: last.dsn, propertyName: last.propertyName };
      await intervalSql.extendLease(pool, claim.ruleId, claim.number, LEASE_SECONDS);
    }
    // Stopped mid-way: left open, taken up again (same number) after the lease.
    if (stopped) return;
    await intervalSql.finishEvaluation(pool, claim.ruleId, claim.number, { matched, fired });
    options.onEvaluated?.({ outcome: 'finished', ruleId: claim.ruleId, matched, fired, seconds: (performance.now() - startedAt) / 1000 });
    log.debug({ ruleId: claim.ruleId, evaluation: claim.number, matched, fired }, 'dss: interval rule evaluated');
  }

  /** The dsn when an actuation exists for it now (created, or created before by this evaluation). */
  async function fire(claim: intervalSql.ClaimedEvaluation, rule: { id: string; action: intervalSql.ClaimedEvaluation['action'] }, row: intervalSql.StateRow): Promise<string | undefined> {
    const event: DssEvent = {
      seq: row.seq,
      eventType: claim.match.eventType,
      dsn: row.dsn,
      oemId: null,
      oemModel: row.oemModel,
      propertyName: row.propertyName === '' ? null : row.propertyName,
      baseType: row.baseType,
      value: row.value,
      at: row.updatedAt.toISOString(),
    };
    const actuation = { ...renderActuation(rule, event, row.streamId), idempotencyKey: `rule:${rule.id}:${claim.number}:${row.dsn}` };
    if (!actuation.deviceId || !actuation.componentId || !actuation.command || findUnstorable(actuation)) {
      log.warn({ ruleId: rule.id, dsn: row.dsn }, 'dss: interval rule action rendered an empty or unstorable field; skipped');
      return undefined;
    }
    try {
      const result = await submitter.submit(actuation);
      if (result.outcome === 'queue_full') {
        log.warn({ ruleId: rule.id, deviceId: actuation.deviceId, limit: result.limit }, 'dss: device queue full; interval actuation dropped');
        return undefined;
      }
      return row.dsn;
    } catch (err) {
      if (!isDataError(err)) throw err;
      log.warn({ ruleId: rule.id, dsn: row.dsn, sqlstate: (err as { code: string }).code }, 'dss: the database refused an interval actuation; skipped');
      return undefined;
    }
  }

  async function runDue(): Promise<number> {
    let count = 0;
    while (!stopped) {
      const claim = await intervalSql.claimDueEvaluation(pool, LEASE_SECONDS, options.instanceId);
      if (!claim) break;
      try {
        await evaluate(claim);
      } catch (err) {
        options.onEvaluated?.({ outcome: 'failed', ruleId: claim.ruleId });
        throw err;
      }
      count++;
    }
    return count;
  }

  const tick = (): void => {
    if (running || stopped) return;
    running = runDue()
      .catch((err: unknown) => {
        // The claim's lease runs out and the evaluation is taken up again (same number).
        log.warn({ err }, 'dss: interval evaluation failed; retried after its lease');
        return 0;
      })
      .finally(() => (running = undefined));
  };
  const timer = setInterval(tick, options.pollMs);
  timer.unref();

  return {
    runDue: () => runDue(),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
