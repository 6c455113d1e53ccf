/**
 * Pure rule logic: does a rule match an event, does its condition hold, and what
 * actuation does its action render to. State (the last value for `changed`,
 * cooldowns) and submission live in `rule-engine.ts`.
 *
 * Values are compared by the event's `base_type`:
 * - `boolean`: 0/1/true/false/"true"/"false"/"0"/"1"; ordering treats false < true.
 * - `integer`, `decimal`, `float`, `number`: as numbers; a value that is not a number matches nothing.
 * - anything else (`string`, `file`, `message`, connectivity's status, …): as strings.
 */
import type { NewActuation } from '../actuations/types.js';
import type { DssEvent } from './events.js';
import { TEMPLATE_PATTERN, type ConditionOp, type RuleAction, type RuleMatch } from './schemas.js';

export interface Rule {
  id: string;
  name: string;
  enabled: boolean;
  match: RuleMatch;
  action: RuleAction;
  cooldownSeconds: number;
  /** An interval rule's interval as given (`"5m"`); null for an event rule. */
  every: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A value in the form it is compared and remembered in (`dss_rule_state.last_value`). */
export type CanonicalValue = boolean | number | string | null;

export function ruleMatches(match: RuleMatch, event: DssEvent): boolean {
  return (
    match.eventType === event.eventType &&
    (match.oemModel === undefined || match.oemModel === event.oemModel) &&
    (match.dsn === undefined || match.dsn === event.dsn) &&
    (match.propertyName === undefined || match.propertyName === event.propertyName)
  );
}

/** Stateful rules need `dss_rule_state`: a `changed` condition or a cooldown. */
export function isStateful(rule: Pick<Rule, 'match' | 'cooldownSeconds'>): boolean {
  return rule.match.condition?.op === 'changed' || rule.cooldownSeconds > 0;
}

const NUMERIC_TYPES = new Set(['integer', 'decimal', 'float', 'number']);

export function canonicalValue(value: unknown, baseType: string | null): CanonicalValue {
  if (value === null || value === undefined) return null;
  if (baseType === 'boolean') {
    if (value === true || value === 1 || value === '1' || value === 'true') return true;
    if (value === false || value === 0 || value === '0' || value === 'false') return false;
    return null;
  }
  if (baseType !== null && NUMERIC_TYPES.has(baseType)) {
    const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    return Number.isFinite(n) ? n : null;
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * Whether the condition holds for `value`. `previous` is the value this rule last
 * saw for the same stream, device and property (`undefined`: never seen); a
 * `changed` condition without a previous value does not hold, it only records one.
 */
export function conditionHolds(
  condition: { op: ConditionOp; value?: string | number | boolean } | undefined,
  value: CanonicalValue,
  baseType: string | null,
  previous?: CanonicalValue,
): boolean {
  if (!condition) return true;
  if (condition.op === 'changed') return previous !== undefined && previous !== value;
  const expected = canonicalValue(condition.value, baseType);
  if (value === null || expected === null) return false;
  switch (condition.op) {
    case 'eq':
      return value === expected;
    case 'ne':
      return value !== expected;
    case 'gt':
      return value > expected;
    case 'gte':
      return value >= expected;
    case 'lt':
      return value < expected;
    case 'lte':
      return value <= expected;
  }
}

/** `{{dsn}}`, `{{value}}`, `{{property_name}}`, `{{oem_model}}` replaced from the event (missing: empty). */
export function renderTemplate(template: string, event: DssEvent): string {
  return template.replace(TEMPLATE_PATTERN, (_whole, field: string) => {
    switch (field) {
      case 'dsn':
        return event.dsn;
      case 'property_name':
        return event.propertyName ?? '';
      case 'oem_model':
        return event.oemModel ?? '';
      case 'value':
        return event.value === undefined || event.value === null ? '' : typeof event.value === 'string' ? event.value : JSON.stringify(event.value);
      default:
        return '';
    }
  });
}

/** The actuation a fired rule submits. The idempotency key makes a replayed event land on the same row. */
export function renderActuation(rule: Pick<Rule, 'id' | 'action'>, event: DssEvent, streamId: string): NewActuation {
  const { action } = rule;
  const actuation: NewActuation = {
    deviceId: renderTemplate(action.deviceId, event),
    componentId: renderTemplate(action.componentId, event),
    command: renderTemplate(action.command, event),
    params: action.params.map((p) => ({ name: renderTemplate(p.name, event), value: typeof p.value === 'string' ? renderTemplate(p.value, event) : p.value })),
    idempotencyKey: `dss:${streamId}:${event.seq}:${rule.id}`,
    source: { kind: 'dss', streamId, seq: event.seq, ruleId: rule.id },
  };
  if (action.ttlSeconds !== undefined) actuation.ttlSeconds = action.ttlSeconds;
  if (action.collapseKey !== undefined) actuation.collapseKey = renderTemplate(action.collapseKey, event);
  return actuation;
}
