import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeLogger, REDACTED_KEYS } from '../../src/logger.js';

describe('logger', () => {
  it('redacts every secret key at the top level and two levels down, and keeps the rest', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = makeLogger({ level: 'info' }, sink);
    const secrets = Object.fromEntries(REDACTED_KEYS.map((key) => [key, `secret-${key}`]));
    logger.info({ ...secrets, req: { headers: { ...secrets } }, keep: 'visible' }, 'message');
    const text = lines.join('');
    for (const value of Object.values(secrets)) expect(text).not.toContain(value);
    expect(JSON.parse(text)).toMatchObject({ authorization: '[redacted]', req: { headers: { deviceToken: '[redacted]' } }, keep: 'visible' });
  });
});
