/**
 * Turns one DSS event into actuations: every enabled rule that matches and whose
 * condition holds submits its action through the durable path (the same
 * `ActuationSubmitter` the REST API uses).
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
import type { ActuationSubmitter } from '../actuations/types.js';
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import type { DssEvent } from './events.js';
import { canonicalValue, conditionHolds, isStateful, renderActuation, ruleMatches, type Rule } from './rules.js';
import * as rulesSql from './rules-sql.js';

export interface RuleEngine {
  /** Resolves when every actuation of the event is committed; rejects if one could not be (retry the event). */
  handleEvent(streamId: string, event: DssEvent, log: Logger): Promise<EventOutcome>;
  /** Reload the rules before the next event. */
  invalidate(): void;
}

export interface EventOutcome {
  matched: number;
  fired: number;
  /** Submitted before (replay) or decided before (state): nothing new. */
  repeated: number;
  /** Rejected by the queue (full) or unrenderable (empty device id). */
  rejected: number;
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

  async function fire(rule: Rule, streamId: string, event: DssEvent, log: Logger): Promise<'fired' | 'repeated' | 'rejected'> {
    const actuation = renderActuation(rule, event, streamId);
    if (!actuation.deviceId || !actuation.componentId || !actuation.command) {
      log.warn({ ruleId: rule.id, seq: event.seq }, 'dss: rule action rendered an empty deviceId, componentId or command; skipped');
      return 'rejected';
    }
    const result = await submitter.submit(actuation);
    if (result.outcome === 'queue_full') {
      log.warn({ ruleId: rule.id, seq: event.seq, deviceId: actuation.deviceId, limit: result.limit }, 'dss: device queue full; actuation dropped');
      return 'rejected';
    }
    log.debug({ ruleId: rule.id, seq: event.seq, actuationId: result.actuation.id, outcome: result.outcome }, 'dss: rule fired');
    return result.outcome === 'created' ? 'fired' : 'repeated';
  }

  return {
    invalidate() {
      cache = undefined;
    },
    async handleEvent(streamId, event, log) {
      const outcome: EventOutcome = { matched: 0, fired: 0, repeated: 0, rejected: 0 };
      for (const rule of await rulesFor(event.eventType)) {
        if (!ruleMatches(rule.match, event)) continue;
        outcome.matched++;
        const value = canonicalValue(event.value, event.baseType);
        let result: 'fired' | 'repeated' | 'rejected' | 'not_fired';
        if (!isStateful(rule)) {
          result = conditionHolds(rule.match.condition, value, event.baseType) ? await fire(rule, streamId, event, log) : 'not_fired';
        } else {
          const key = { ruleId: rule.id, streamId, dsn: event.dsn, propertyName: event.propertyName ?? '' };
          const state = await rulesSql.getRuleState(pool, key, rule.cooldownSeconds);
          if (state && state.evaluatedSeq >= event.seq) {
            outcome.repeated++;
            continue;
          }
          const holds = conditionHolds(rule.match.condition, value, event.baseType, state ? state.lastValue : undefined);
          result = holds && !state?.coolingDown ? await fire(rule, streamId, event, log) : 'not_fired';
          await rulesSql.saveRuleState(pool, key, value, event.seq, result === 'fired' || result === 'repeated');
        }
        if (result !== 'not_fired') outcome[result]++;
      }
      return outcome;
    },
  };
}
