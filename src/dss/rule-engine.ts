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
 */
import type { ActuationSubmitter, NewActuation } from '../actuations/types.js';
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import type { EventTask } from './event-pipeline.js';
import type { DssEvent } from './events.js';
import { canonicalValue, conditionHolds, isStateful, renderActuation, ruleMatches, type Rule } from './rules.js';
import * as rulesSql from './rules-sql.js';

export interface RuleEngine {
  /**
   * The event's work: one task per matching enabled rule, keyed by its target
   * device (and its state row when stateful) for the pipeline. A task resolves when
   * its actuation is committed and rejects if it could not be (replay the event).
   */
  planEvent(streamId: string, event: DssEvent, log: Logger): Promise<EventTask[]>;
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

  /** Submits; false when nothing was created (queue full). */
  async function fire(rule: Rule, event: DssEvent, actuation: NewActuation, log: Logger): Promise<boolean> {
    const result = await submitter.submit(actuation);
    if (result.outcome === 'queue_full') {
      log.warn({ ruleId: rule.id, seq: event.seq, deviceId: actuation.deviceId, limit: result.limit }, 'dss: device queue full; actuation dropped');
      return false;
    }
    log.debug({ ruleId: rule.id, seq: event.seq, actuationId: result.actuation.id, outcome: result.outcome }, 'dss: rule fired');
    return true;
  }

  function taskFor(rule: Rule, streamId: string, event: DssEvent, log: Logger): EventTask | undefined {
    const actuation = renderActuation(rule, event, streamId);
    if (!actuation.deviceId || !actuation.componentId || !actuation.command) {
      log.warn({ ruleId: rule.id, seq: event.seq }, 'dss: rule action rendered an empty deviceId, componentId or command; skipped');
      return undefined;
    }
    const value = canonicalValue(event.value, event.baseType);
    if (!isStateful(rule)) {
      if (!conditionHolds(rule.match.condition, value, event.baseType)) return undefined;
      return {
        keys: [],
        orderedKeys: [`device:${actuation.deviceId}`],
        async run(handedOn) {
          const fired = fire(rule, event, actuation, log); // submitted (in device order) before its first await
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
        const submitted = holds && !state?.coolingDown ? fire(rule, event, actuation, log) : Promise.resolve(false);
        handedOn();
        await rulesSql.saveRuleState(pool, key, value, event.seq, await submitted);
      },
    };
  }

  return {
    invalidate() {
      cache = undefined;
    },
    async planEvent(streamId, event, log) {
      const tasks: EventTask[] = [];
      for (const rule of await rulesFor(event.eventType)) {
        if (!ruleMatches(rule.match, event)) continue;
        const task = taskFor(rule, streamId, event, log);
        if (task) tasks.push(task);
      }
      return tasks;
    },
  };
}
