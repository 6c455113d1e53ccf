import { describe, expect, it } from 'vitest';
import { findUnstorable, isStorableText } from '../../src/db/storable.js';

describe('storable text', () => {
  it('refuses U+0000 and lone surrogates, accepts paired surrogates', () => {
    expect(isStorableText('plain')).toBe(true);
    expect(isStorableText('emoji \ud83d\ude00')).toBe(true);
    expect(isStorableText('c\u0000')).toBe(false);
    expect(isStorableText('high \ud800 alone')).toBe(false);
    expect(isStorableText('low \udc00 alone')).toBe(false);
  });

  it('finds the path of the first unstorable string or key, and values nested too deep', () => {
    expect(findUnstorable({ a: [1, 'ok', { b: null }] })).toBeUndefined();
    expect(findUnstorable({ params: [{ name: 'x', value: 'bad\u0000' }] })).toEqual({ path: ['params', 0, 'value'], reason: 'text' });
    expect(findUnstorable({ ['k\ud800']: 1 })).toEqual({ path: ['k\ud800'], reason: 'text' });
    expect(findUnstorable(JSON.parse('{"a":[1,-1e400]}'))).toEqual({ path: ['a', 1], reason: 'number' });
    expect(findUnstorable({ n: 1.7e308, m: -0 })).toBeUndefined();
    let deep: unknown = 1;
    for (let i = 0; i < 5_000; i++) deep = [deep];
    expect(findUnstorable(deep)?.reason).toBe('depth');
    expect(findUnstorable([[[1]]], 3)).toBeUndefined();
    expect(findUnstorable([[[[1]]]], 3)?.reason).toBe('depth');
  });
});
