/** JOBS_ENABLED, JOBS_POLL_MS, JOBS_LEASE_MS, JOBS_RETENTION_DAYS. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';

const base = { NODE_ENV: 'test' };

describe('JOBS_*', () => {
  it('default to enabled, a 1 s poll, a 5 s lease and finished jobs kept 30 days', () => {
    expect(loadConfig(base)).toMatchObject({ jobsEnabled: true, jobsPollMs: 1_000, jobsLeaseMs: 5_000, jobsRetentionDays: 30 });
    expect(loadConfig({ ...base, JOBS_RETENTION_DAYS: '0' })).toMatchObject({ jobsRetentionDays: 0 });
    expect(loadConfig({ ...base, JOBS_ENABLED: 'false', JOBS_POLL_MS: '200', JOBS_LEASE_MS: '2000' })).toMatchObject({ jobsEnabled: false, jobsPollMs: 200, jobsLeaseMs: 2_000 });
  });

  it('refuse a lease shorter than two polls (it is renewed once per poll) and values out of range', () => {
    expect(() => loadConfig({ ...base, JOBS_POLL_MS: '3000' })).toThrow(/^JOBS_LEASE_MS: must be at least twice JOBS_POLL_MS \(3000\)/);
    for (const [name, bad] of [['JOBS_POLL_MS', '10'], ['JOBS_LEASE_MS', 'soon'], ['JOBS_ENABLED', 'maybe'], ['JOBS_RETENTION_DAYS', '-1'], ['JOBS_RETENTION_DAYS', '2.5']]) {
      expect(() => loadConfig({ ...base, [name!]: bad! })).toThrow(ConfigError);
    }
  });
});
