import { describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '../../src/gateway/protocol.js';
import { closeCodeLabel } from '../../src/metrics.js';

describe('closeCodeLabel', () => {
  it('keeps the documented close codes and those of the ws library, and folds the rest into "other"', () => {
    for (const { code } of Object.values(CLOSE_CODES)) expect(closeCodeLabel(code)).toBe(String(code));
    for (const code of [1002, 1005, 1006, 1007, 1009]) expect(closeCodeLabel(code)).toBe(String(code));
    for (const code of [0, 999, 1004, 1012, 1015, 2999, 3000, 4000, 4999, 65535, -1, 1.5, Number.NaN]) expect(closeCodeLabel(code)).toBe('other');
  });
});
