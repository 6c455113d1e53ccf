import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeLogSampler } from '../../src/log-sampler.js';
import { makeLogger } from '../../src/logger.js';

describe('log sampler', () => {
  it('logs the first lines of a kind per window, then one summary of what it left out', () => {
    const lines: { msg: string; kind?: string; suppressed?: number }[] = [];
    const sink = new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } });
    let t = 0;
    const sampler = makeLogSampler(makeLogger({ level: 'debug' }, sink), { perWindow: 3, windowMs: 1_000, now: () => t });
    for (let i = 0; i < 1_000; i++) sampler.log('unknown-ack', 'warn', { i }, 'unknown ack');
    sampler.log('other', 'warn', {}, 'other mistake');
    expect(lines.filter((l) => l.msg === 'unknown ack')).toHaveLength(3);
    expect(lines.filter((l) => l.msg === 'other mistake')).toHaveLength(1);
    t = 1_000;
    sampler.log('unknown-ack', 'warn', {}, 'unknown ack');
    expect(lines.find((l) => l.suppressed !== undefined)).toMatchObject({ kind: 'unknown-ack', suppressed: 997 });
    expect(lines.filter((l) => l.msg === 'unknown ack')).toHaveLength(4);
  });
});
