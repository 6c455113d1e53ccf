/**
 * Turns one DSS event into actuations: every enabled rule that matches and whose
 * condition holds submits its action through the durable path (the same
 * `ActuationSubmitter` the REST API uses). The stream client runs the tasks
 * through its `EventPipeline`, which keeps them in order per device and per state row.
 *
 * No event ever yields a second actuation: the idempotency key
 * `dss:<stream>:<seq>:<rule>` is unique per device in the database. Stateful
 * rules (`changed`, cooldown) also write `dss_rule_state` after the submit
 * committed; a replayed event at or below its `evaluated_seq` was decided
 * already and is passed over, so a replay cannot re-decide it differently.
 *
 * Rules are cached and reloaded every `refreshMs` (edits on another instance show
 * up within that time) and at once after an edit through this instance's API.
 *
 * An event that cannot become an actuation never stalls its stream: a rendered
 * actuation (or rule state) with text PostgreSQL cannot store is not submitted
 * (`DSS_ERR_UNSTORABLE`), and one the database refuses for a reason of its own
 * (`isDataError`: retrying would fail again) is dropped (`DSS_ERR_ACTUATION_REFUSED`), and
 * so is the event's rule state row when the database refuses that (its actuation, if
 * any, is committed; the key's next event is compared with the last state stored).
 * Both are reported to `skipped` and the event counts as handled, so the position
 * moves on and the device's later events are delivered. Anything else (the database
 * out, a timeout, an earlier actuation of the device that failed) rejects: replay.
 */
import type { ActuationSubmitter, NewActuation } from '../actuations/types.js';
import { isDataError } from '../db/errors.js';
import type { Pool } from '../db/pool.js';
import { findUnstorable } from '../db/storable.js';
import type { Logger } from '../logger.js';
import type { DssErrorCode } from './errors.js';
import type { EventTask } from './event-pipeline.js';
import type { DssEvent } from './events.js';
import { canonicalValue, conditionHolds, isStateful, renderActuation, ruleMatches, type CanonicalValue, type Rule } from './rules.js';
import * as rulesSql from './rules-sql.js';

/** Told of a rule actuation skipped for a reason of the event's own (counted and recorded by the stream). */
export type SkipReporter = (code: Extract<DssErrorCode, 'DSS_ERR_UNSTORABLE' | 'DSS_ERR_ACTUATION_REFUSED'>, detail: string) => void;

export interface RuleEngine {
  /**
   * The event's work: one task per matching enabled rule, keyed by its target
   * device (and its state row when stateful) for the pipeline. A task resolves when
   * its actuation is committed or skipped (`skipped` is told why), and rejects if it
   * could not be committed for a passing reason (replay the event).
   */
  planEvent(streamId: string, event: DssEvent, log: Logger, skipped?: SkipReporter): Promise<EventTask[]>;
  /** Reload the rules before the next event. */
  invalidate(): void;
}

export function makeRuleEngine(options: { pool: Pool; submitter: ActuationSubmitter; refreshMs: number }): RuleEngine {
  const { pool, submitter, refreshMs } = options;
  let cache: { loadedAt: number; byType: Map<string, Rule[]> } | undefined;
  let loading: Promise<Map<string, Rule[]>> | undefined;

  async function rulesFor(eventType: string): Promise<Rule[]> {
    if (!cache || Date.now() - cache.loadedAt >= refreshMs) {
      loading ??= rulesSql.listRules(pool, true).then(
        (rules) => {
          const byType = new Map<string, Rule[]>();
          for (const rule of rules) byType.set(rule.match.eventType, [...(byType.get(rule.match.eventType) ?? []), rule]);
          cache = { loadedAt: Date.now(), byType };
          loading = undefined;
          return byType;
        },
        (err: unknown) => {
          loading = undefined;
          throw err;
        },
      );
      await loading;
    }
    return cache!.byType.get(eventType) ?? [];
  }

  /** Submits; false when nothing was created (queue full, or refused for good). */
  async function fire(rule: Rule, event: DssEvent, actuation: NewActuation, log: Logger, skipped: SkipReporter): Promise<boolean> {
    let result;
    try {
      result = await submitter.submit(actuation);
    } catch (err) {
      if (!isDataError(err)) throw err;
      // Only the SQLSTATE: a database message or detail can quote the actuation's values.
      skipped('DSS_ERR_ACTUATION_REFUSED', `seq ${event.seq} rule ${rule.id}: SQLSTATE ${(err as { code: string }).code}`);
      return false;
    }
    if (result.outcome === 'queue_full') {
      log.warn({ ruleId: rule.id, seq: event.seq, deviceId: actuation.deviceId, limit: result.limit }, 'dss: device queue full; actuation dropped');
      return false;
    }
    log.debug({ ruleId: rule.id, seq: event.seq, actuationId: result.actuation.id, outcome: result.outcome }, 'dss: rule fired');
    return true;
  }

  /** The rule's actuation and the event's value as compared, or where they hold what PostgreSQL refuses. */
  function render(rule: Rule, event: DssEvent, streamId: string): { actuation: NewActuation; value: CanonicalValue } | { unstorable: string } {
    try {
      const actuation = renderActuation(rule, event, streamId);
      const value = canonicalValue(event.value, event.baseType);
      // A stateful rule also stores the event's dsn, property and value in its state row.
      const found = findUnstorable(isStateful(rule) ? { actuation, state: { dsn: event.dsn, propertyName: event.propertyName, value } } : { actuation });
      if (!found) return { actuation, value };
      const why = { text: 'U+0000 or a lone surrogate', number: 'not a finite number', depth: 'nested too deep' }[found.reason];
      return { unstorable: `${found.path.join('.')} (${why})` };
    } catch (err) {
      // A value too deep for JSON.stringify (RangeError) renders nothing, now or on a replay.
      return { unstorable: `value (${(err as Error).name})` };
    }
  }

  function taskFor(rule: Rule, streamId: string, event: DssEvent, log: Logger, skipped: SkipReporter): EventTask | undefined {
    const rendered = render(rule, event, streamId);
    if ('unstorable' in rendered) {
      skipped('DSS_ERR_UNSTORABLE', `seq ${event.seq} rule ${rule.id}: ${rendered.unstorable}`);
      return undefined;
    }
    const { actuation, value } = rendered;
    if (!actuation.deviceId || !actuation.componentId || !actuation.command) {
      log.warn({ ruleId: rule.id, seq: event.seq }, 'dss: rule action rendered an empty deviceId, componentId or command; skipped');
      return undefined;
    }
    if (!isStateful(rule)) {
      if (!conditionHolds(rule.match.condition, value, event.baseType)) return undefined;
      return {
        keys: [],
        orderedKeys: [`device:${actuation.deviceId}`],
        async run(handedOn) {
          const fired = fire(rule, event, actuation, log, skipped); // submitted (in device order) before its first await
          handedOn();
          await fired;
        },
      };
    }
    const key = { ruleId: rule.id, streamId, dsn: event.dsn, propertyName: event.propertyName ?? '' };
    return {
      keys: [`state:${rule.id}:${key.dsn}:${key.propertyName}`],
      orderedKeys: [`device:${actuation.deviceId}`],
      async run(handedOn) {
        const state = await rulesSql.getRuleState(pool, key, rule.cooldownSeconds);
        // Decided before (this is a replay): its actuation, if any, is committed.
        if (state && state.evaluatedSeq >= event.seq) return;
        const holds = conditionHolds(rule.match.condition, value, event.baseType, state ? state.lastValue : undefined);
        const submitted = holds && !state?.coolingDown ? fire(rule, event, actuation, log, skipped) : Promise.resolve(false);
        handedOn();
        const fired = await submitted;
        try {
          await rulesSql.saveRuleState(pool, key, value, event.seq, fired);
        } catch (err) {
          // E.g. a dsn too long for the state row's index (54000): every replay would fail the same way.
          if (!isDataError(err)) throw err;
          skipped('DSS_ERR_ACTUATION_REFUSED', `seq ${event.seq} rule ${rule.id}: rule state SQLSTATE ${(err as { code: string }).code}`);
        }
      },
    };
  }

  return {
    invalidate() {
      cache = undefined;
    },
    async planEvent(streamId, event, log, skipped = () => undefined) {
      const tasks: EventTask[] = [];
      for (const rule of await rulesFor(event.eventType)) {
        if (!ruleMatches(rule.match, event)) continue;
        const task = taskFor(rule, streamId, event, log, skipped);
        if (task) tasks.push(task);
      }
      return tasks;
    },
  };
}
