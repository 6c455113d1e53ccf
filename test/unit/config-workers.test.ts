/** WORKERS, WORKER_INDEX (set by the primary), WORKER_MAX_RESTARTS_PER_MINUTE. */
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';

const base = { NODE_ENV: 'test', INSTANCE_ID: 'box' };

describe('WORKERS', () => {
  it('defaults to one process (no cluster), 10 restarts a minute, the instance id as configured', () => {
    expect(loadConfig(base)).toMatchObject({ workers: 1, workerIndex: undefined, workerMaxRestartsPerMinute: 10, instanceId: 'box' });
  });

  it('takes a number, or auto for one per core', () => {
    expect(loadConfig({ ...base, WORKERS: '3' }).workers).toBe(3);
    expect(loadConfig({ ...base, WORKERS: 'auto' }).workers).toBe(os.availableParallelism());
  });

  it('derives a worker instance id from the configured one and the index', () => {
    expect(loadConfig({ ...base, WORKERS: '2', WORKER_INDEX: '1' })).toMatchObject({ instanceId: 'box-w1', workerIndex: 1 });
  });

  it('refuses values out of range or not a number', () => {
    expect(() => loadConfig({ ...base, WORKERS: 'many' })).toThrow(/^WORKERS: must be a whole number or auto, got "many"/);
    for (const [name, bad] of [['WORKERS', '0'], ['WORKERS', '65'], ['WORKER_INDEX', '-1'], ['WORKER_MAX_RESTARTS_PER_MINUTE', '0']]) {
      expect(() => loadConfig({ ...base, [name!]: bad! })).toThrow(ConfigError);
    }
  });
});
