/** The change feed's settings (EVENTS_*): defaults and bounds. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';

const base = { NODE_ENV: 'test' };

describe('EVENTS_* settings', () => {
  it('default to 24 h of events, 100 subscribers, 1 MiB per subscriber, a heartbeat every 15 s, a pass every 20 ms, nudged ones 10 ms apart at least', () => {
    expect(loadConfig(base)).toMatchObject({
      eventsRetentionHours: 24,
      eventsMaxSubscribers: 100,
      eventsSubscriberBufferBytes: 1024 * 1024,
      eventsHeartbeatMs: 15_000,
      eventsSequencerIntervalMs: 20,
      eventsSequencerMinGapMs: 10,
    });
    expect(loadConfig({ ...base, EVENTS_RETENTION_HOURS: '0' }).eventsRetentionHours).toBe(0);
  });

  it('refuse values out of bounds, naming the variable', () => {
    for (const [name, bad] of [
      ['EVENTS_RETENTION_HOURS', '-1'],
      ['EVENTS_SUBSCRIBER_BUFFER_BYTES', '1000'],
      ['EVENTS_HEARTBEAT_MS', '10'],
      ['EVENTS_SEQUENCER_INTERVAL_MS', '0'],
      ['EVENTS_SEQUENCER_MIN_GAP_MS', '0'],
      ['EVENTS_MAX_SUBSCRIBERS', 'many'],
    ]) {
      expect(() => loadConfig({ ...base, [name!]: bad! }), name).toThrow(ConfigError);
      expect(() => loadConfig({ ...base, [name!]: bad! }), name).toThrow(name!);
    }
  });
});
