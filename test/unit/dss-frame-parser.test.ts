import { describe, expect, it } from 'vitest';
import { toDssEvent } from '../../src/dss/events.js';
import { formatFrame, parseFrames } from '../../src/dss/frame-parser.js';

const datapoint = (value: unknown, extra: Record<string, unknown> = {}) => ({
  seq: '13',
  metadata: { oem_id: '0dfc7900', oem_model: 'linuxevb', dsn: 'AC000W005606115', property_name: 'Blue_LED', base_type: 'string', event_type: 'datapoint', ...extra },
  datapoint: { id: '1ff9b91c', value, metadata: {} },
});

describe('DSS frame parser', () => {
  it('reads a heartbeat', () => {
    expect(parseFrames('1|Z')).toEqual([{ kind: 'heartbeat' }]);
  });

  it('reads an event by its length, with | inside a string value (the split-on-| clients break here)', () => {
    const json = JSON.stringify(datapoint('on|off|{"x":1}'));
    const frames = parseFrames(`${json.length}|${json}`);
    expect(frames).toEqual([{ kind: 'event', rawEvent: datapoint('on|off|{"x":1}') }]);
    expect(toDssEvent((frames[0] as { rawEvent: unknown }).rawEvent)).toMatchObject({ seq: 13, value: 'on|off|{"x":1}', propertyName: 'Blue_LED' });
  });

  it('counts LEN in UTF-8 bytes, and accepts a single frame whose LEN counts UTF-16 code units', () => {
    const json = JSON.stringify(datapoint('Grüße 🌡️ 21°C'));
    expect(Buffer.byteLength(json)).not.toBe(json.length);
    expect(parseFrames(formatFrame(json))).toEqual([{ kind: 'event', rawEvent: JSON.parse(json) }]);
    expect(parseFrames(Buffer.from(formatFrame(json)))).toEqual([{ kind: 'event', rawEvent: JSON.parse(json) }]);
    expect(parseFrames(`${json.length}|${json}`)).toEqual([{ kind: 'event', rawEvent: JSON.parse(json) }]);
  });

  it('skips a frame whose length matches neither count', () => {
    const json = JSON.stringify(datapoint(1));
    for (const wrong of [json.length + 5, json.length - 3, 0]) {
      const [frame] = parseFrames(`${wrong}|${json}`);
      expect(frame).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_LENGTH' });
    }
  });

  it('skips a frame whose payload is not a JSON object', () => {
    expect(parseFrames('7|{"a":1,')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_JSON' });
    expect(parseFrames('8|{"a":1,}')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_JSON' });
    expect(parseFrames('3|[1]')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_JSON' });
    expect(parseFrames('1|Y')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_JSON' });
  });

  it('skips a message without a LEN| prefix', () => {
    expect(parseFrames('{"seq":"1"}')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_PREFIX' });
    expect(parseFrames('Z')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_PREFIX' });
    expect(parseFrames('12345678901|{}')[0]).toMatchObject({ kind: 'invalid', code: 'DSS_ERR_FRAME_PREFIX' });
  });

  it('splits frames joined in one message, and resynchronises after a bad JSON frame of the right length', () => {
    const a = JSON.stringify(datapoint('a|b'));
    const b = JSON.stringify(datapoint(2));
    const frames = parseFrames(`${formatFrame(a)}1|Z5|{bad}${formatFrame(b)}\n`);
    expect(frames.map((f) => f.kind)).toEqual(['event', 'heartbeat', 'invalid', 'event']);
    expect(frames[2]).toMatchObject({ code: 'DSS_ERR_FRAME_JSON' });
  });

  it('ignores a trailing newline and an empty message', () => {
    expect(parseFrames('1|Z\r\n')).toEqual([{ kind: 'heartbeat' }]);
    expect(parseFrames('')).toEqual([]);
  });
});

describe('DSS events', () => {
  it('normalises the five documented types and refuses unknown shapes', () => {
    const meta = { oem_id: 'o', oem_model: 'm', dsn: 'D1', resource_tags: [] };
    expect(toDssEvent({ seq: '1', metadata: { ...meta, event_type: 'connectivity' }, connection: { status: 'Online' } })).toMatchObject({ eventType: 'connectivity', value: 'Online' });
    expect(toDssEvent({ seq: '2', metadata: { ...meta, event_type: 'location' }, location_event: { lat: '1' } })).toMatchObject({ eventType: 'location', seq: 2 });
    expect(toDssEvent({ seq: 3, metadata: { ...meta, event_type: 'registration' }, registration_event: { registered: true } })).toMatchObject({ eventType: 'registration' });
    expect(toDssEvent({ ...datapoint(1), metadata: { ...datapoint(1).metadata, event_type: 'datapointack' } })).toMatchObject({ eventType: 'datapointack', value: 1 });
    expect(toDssEvent({ seq: '1', metadata: { ...meta, event_type: 'firmware' } })).toBeUndefined();
    expect(toDssEvent({ ...datapoint(1), seq: 'abc' })).toBeUndefined();
    expect(toDssEvent({ ...datapoint(1), datapoint: {} })).toBeUndefined();
    expect(toDssEvent({ seq: '1', metadata: { ...meta, event_type: 'connectivity' } })).toBeUndefined();
  });

  it("takes the event's own time when it is a date, else null", () => {
    const meta = { oem_id: 'o', oem_model: 'm', dsn: 'D1' };
    const conn = (event_time: unknown) => toDssEvent({ seq: 1, metadata: { ...meta, event_type: 'connectivity' }, connection: { status: 'Online', event_time } })?.at;
    expect(conn('2026-12-01T10:00:00Z')).toBe('2026-12-01T10:00:00.000Z');
    expect(conn(undefined)).toBeNull();
    expect(conn('yesterday')).toBeNull();
    expect(conn(12)).toBeNull();
    expect(conn('0001-01-01T00:00:00Z')).toBeNull();
    const dp = toDssEvent({ ...datapoint(1), datapoint: { value: 1, updated_at: '2026-12-01T10:00:00+01:00' } });
    expect(dp?.at).toBe('2026-12-01T09:00:00.000Z');
    expect(toDssEvent({ seq: 3, metadata: { ...meta, event_type: 'registration' }, registration_event: { unregistered_at: '2026-01-02T00:00:00Z' } })?.at).toBe('2026-01-02T00:00:00.000Z');
  });
});
