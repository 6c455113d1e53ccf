/** RETENTION_DAYS and the read-only metrics credential (METRICS_USERNAME/METRICS_PASSWORD). */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';

const base = { NODE_ENV: 'test' };

describe('RETENTION_DAYS', () => {
  it('defaults to 30, and 0 keeps everything', () => {
    expect(loadConfig(base).retentionDays).toBe(30);
    expect(loadConfig({ ...base, RETENTION_DAYS: '0' }).retentionDays).toBe(0);
    expect(loadConfig({ ...base, RETENTION_DAYS: '7' }).retentionDays).toBe(7);
  });

  it('refuses what is not a whole number of days', () => {
    for (const bad of ['-1', 'a week', '1.5']) expect(() => loadConfig({ ...base, RETENTION_DAYS: bad })).toThrow(ConfigError);
  });
});

describe('METRICS_USERNAME, METRICS_PASSWORD', () => {
  it('is unset unless given, and given as a pair', () => {
    expect(loadConfig(base).metricsCredentials).toBeUndefined();
    expect(loadConfig({ ...base, METRICS_USERNAME: 'prom', METRICS_PASSWORD: 'secret' }).metricsCredentials).toEqual({ username: 'prom', password: 'secret' });
    expect(() => loadConfig({ ...base, METRICS_USERNAME: 'prom' })).toThrow(/METRICS_PASSWORD.*set together/);
    expect(() => loadConfig({ ...base, METRICS_PASSWORD: 'secret' })).toThrow(/METRICS_USERNAME.*set together/);
  });

  it('needs at least 12 characters in production', () => {
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://x@h/db', API_USERNAME: 'operator', API_PASSWORD: 'at-least-12-characters' };
    expect(() => loadConfig({ ...production, METRICS_USERNAME: 'prom', METRICS_PASSWORD: 'short' })).toThrow(/METRICS_PASSWORD/);
    expect(loadConfig({ ...production, METRICS_USERNAME: 'prom', METRICS_PASSWORD: 'long-enough-password' }).metricsCredentials?.username).toBe('prom');
  });
});
