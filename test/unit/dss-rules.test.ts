import { describe, expect, it } from 'vitest';
import type { DssEvent } from '../../src/dss/events.js';
import { canonicalValue, conditionHolds, isStateful, renderActuation, ruleMatches } from '../../src/dss/rules.js';
import { ruleCreateBody, streamCreateBody } from '../../src/dss/schemas.js';
import { validate } from '../../src/http/validate.js';

const event = (over: Partial<DssEvent> = {}): DssEvent => ({
  seq: 42,
  eventType: 'datapoint',
  dsn: 'AC000W1',
  oemId: '0dfc7900',
  oemModel: 'linuxevb',
  propertyName: 'temp',
  baseType: 'integer',
  value: 25,
  at: null,
  ...over,
});

describe('rule matching', () => {
  it('matches on event type and the optional oem model, dsn and property', () => {
    expect(ruleMatches({ eventType: 'datapoint' }, event())).toBe(true);
    expect(ruleMatches({ eventType: 'connectivity' }, event())).toBe(false);
    expect(ruleMatches({ eventType: 'datapoint', dsn: 'AC000W1', propertyName: 'temp', oemModel: 'linuxevb' }, event())).toBe(true);
    expect(ruleMatches({ eventType: 'datapoint', dsn: 'OTHER' }, event())).toBe(false);
    expect(ruleMatches({ eventType: 'datapoint', propertyName: 'Blue_LED' }, event())).toBe(false);
    expect(ruleMatches({ eventType: 'datapoint', oemModel: 'ledevb' }, event())).toBe(false);
  });

  it('compares by base_type: integers as numbers, not as strings', () => {
    expect(conditionHolds({ op: 'gt', value: 9 }, canonicalValue('10', 'integer'), 'integer')).toBe(true);
    expect(conditionHolds({ op: 'gt', value: '9' }, canonicalValue(10, 'integer'), 'integer')).toBe(true);
    expect(conditionHolds({ op: 'lte', value: 10 }, canonicalValue(10.0, 'decimal'), 'decimal')).toBe(true);
    expect(conditionHolds({ op: 'lt', value: 10 }, canonicalValue(10, 'decimal'), 'decimal')).toBe(false);
    expect(conditionHolds({ op: 'gte', value: 10 }, canonicalValue('n/a', 'integer'), 'integer')).toBe(false);
    expect(conditionHolds({ op: 'ne', value: 5 }, canonicalValue(null, 'integer'), 'integer')).toBe(false);
  });

  it('compares booleans given as 0/1, true/false or strings', () => {
    expect(conditionHolds({ op: 'eq', value: true }, canonicalValue(1, 'boolean'), 'boolean')).toBe(true);
    expect(conditionHolds({ op: 'eq', value: 1 }, canonicalValue(true, 'boolean'), 'boolean')).toBe(true);
    expect(conditionHolds({ op: 'eq', value: 'false' }, canonicalValue(0, 'boolean'), 'boolean')).toBe(true);
    expect(conditionHolds({ op: 'ne', value: false }, canonicalValue(0, 'boolean'), 'boolean')).toBe(false);
    expect(conditionHolds({ op: 'gt', value: false }, canonicalValue(1, 'boolean'), 'boolean')).toBe(true);
  });

  it('compares strings as strings ("10" < "9") and connectivity status', () => {
    expect(conditionHolds({ op: 'lt', value: '9' }, canonicalValue('10', 'string'), 'string')).toBe(true);
    expect(conditionHolds({ op: 'eq', value: 'Offline' }, canonicalValue('Offline', null), null)).toBe(true);
    expect(conditionHolds({ op: 'eq', value: 1 }, canonicalValue('1', 'string'), 'string')).toBe(true);
  });

  it('changed holds only against a different previous value; the first value only sets the baseline', () => {
    const changed = { op: 'changed' as const };
    expect(conditionHolds(changed, 1, 'integer', undefined)).toBe(false);
    expect(conditionHolds(changed, 1, 'integer', 1)).toBe(false);
    expect(conditionHolds(changed, 2, 'integer', 1)).toBe(true);
    expect(conditionHolds(changed, true, 'boolean', null)).toBe(true);
    expect(isStateful({ match: { eventType: 'datapoint', condition: changed }, cooldownSeconds: 0 })).toBe(true);
    expect(isStateful({ match: { eventType: 'datapoint', condition: { op: 'eq', value: 1 } }, cooldownSeconds: 5 })).toBe(true);
    expect(isStateful({ match: { eventType: 'datapoint' }, cooldownSeconds: 0 })).toBe(false);
  });

  it('renders the action with placeholders and the replay-proof idempotency key', () => {
    const rule = validate(ruleCreateBody, {
      name: 'r',
      match: { eventType: 'datapoint' },
      action: {
        deviceId: 'dev-{{dsn}}',
        componentId: '{{ property_name }}',
        command: 'SET.v1',
        params: [{ name: 'value', value: '{{value}}' }, { name: 'model', value: '{{oem_model}}' }, { name: 'n', value: 3 }],
        ttlSeconds: 60,
        collapseKey: '{{dsn}}:{{property_name}}',
      },
    });
    expect(renderActuation({ id: 'rule-1', action: rule.action }, event({ value: 'a|b' }), 'stream-1')).toEqual({
      deviceId: 'dev-AC000W1',
      componentId: 'temp',
      command: 'SET.v1',
      params: [{ name: 'value', value: 'a|b' }, { name: 'model', value: 'linuxevb' }, { name: 'n', value: 3 }],
      ttlSeconds: 60,
      collapseKey: 'AC000W1:temp',
      idempotencyKey: 'dss:stream-1:42:rule-1',
      source: { kind: 'dss', streamId: 'stream-1', seq: 42, ruleId: 'rule-1' },
    });
  });
});

describe('rule and stream validation', () => {
  const good = { name: 'r', match: { eventType: 'datapoint' }, action: { deviceId: 'd', componentId: 'c', command: 'x' } };
  const fieldOf = (body: unknown) => {
    try {
      validate(ruleCreateBody, body);
      return 'valid';
    } catch (err) {
      return (err as Error).message.split(':')[0];
    }
  };

  it('names the field that is wrong', () => {
    expect(fieldOf(good)).toBe('valid');
    expect(fieldOf({ ...good, match: { eventType: 'bogus' } })).toBe('match.eventType');
    expect(fieldOf({ ...good, match: { eventType: 'datapoint', condition: { op: 'gt' } } })).toBe('match.condition.value');
    expect(fieldOf({ ...good, match: { eventType: 'datapoint', condition: { op: 'between', value: 1 } } })).toBe('match.condition.op');
    expect(fieldOf({ ...good, match: { eventType: 'location', condition: { op: 'eq', value: 1 } } })).toBe('match.condition');
    expect(fieldOf({ ...good, action: { ...good.action, deviceId: '{{device}}' } })).toBe('action.deviceId');
    expect(fieldOf({ ...good, action: { ...good.action, params: [{ name: 'a', value: '{{nope}}' }] } })).toBe('action.params.0.value');
    expect(fieldOf({ ...good, action: { ...good.action, ttlSeconds: -1 } })).toBe('action.ttlSeconds');
    expect(fieldOf({ ...good, cooldownSeconds: 1.5 })).toBe('cooldownSeconds');
    expect(fieldOf({ ...good, name: '' })).toBe('name');
  });

  it('accepts only ws:// and wss:// stream URLs without a key in them', () => {
    const s = { name: 's', url: 'wss://stream.aylanetworks.com/stream', streamKey: 'abcdef0123456789' };
    expect(validate(streamCreateBody, s)).toMatchObject({ enabled: true });
    expect(() => validate(streamCreateBody, { ...s, url: 'https://x/stream' })).toThrow(/^url:/);
    expect(() => validate(streamCreateBody, { ...s, url: 'wss://x/stream?stream_key=abc' })).toThrow(/^url:/);
    expect(() => validate(streamCreateBody, { ...s, streamKey: 'short' })).toThrow(/^streamKey:/);
  });
});
