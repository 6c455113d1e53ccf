import { describe, expect, it } from 'vitest';
import { validate, version } from 'uuid';
import { actuationId, uuidV7At } from '../../src/actuations/actuation-ids.js';

/** The 48-bit Unix ms of a UUIDv7. */
const msOf = (id: string) => parseInt(id.replaceAll('-', '').slice(0, 12), 16);

describe('actuationId', () => {
  it('makes RFC 9562 version-7 UUIDs carrying the current time', () => {
    const before = Date.now();
    const id = actuationId();
    const after = Date.now();
    expect(validate(id)).toBe(true);
    expect(version(id)).toBe(7);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(msOf(id)).toBeGreaterThanOrEqual(before);
    expect(msOf(id)).toBeLessThanOrEqual(after);
  });

  it('gives distinct ids in creation order across many refills of the random pool', () => {
    // 50,000 ids take the 4 KiB pool through ~120 refills and many ids within one millisecond.
    const ids = Array.from({ length: 50_000 }, () => actuationId());
    expect(new Set(ids).size).toBe(ids.length);
    const outOfOrder = ids.findIndex((id, i) => i > 0 && id <= ids[i - 1]!);
    expect(outOfOrder).toBe(-1);
  });

  it('draws the random bits from the pool: the tails of ids in one millisecond differ', () => {
    // Checked to fail with the tail taken from a constant instead of the pool.
    const tails = new Set(Array.from({ length: 1_000 }, () => actuationId().slice(-10)));
    expect(tails.size).toBeGreaterThan(990);
  });
});

describe('uuidV7At', () => {
  it('makes version-7 UUIDs of the given time, distinct, with random bits from the pool', () => {
    const at = Date.parse('2026-01-02T03:04:05.678Z');
    const ids = Array.from({ length: 20_000 }, () => uuidV7At(at));
    for (const id of ids.slice(0, 100)) {
      expect(validate(id)).toBe(true);
      expect(version(id)).toBe(7);
      expect(msOf(id)).toBe(at);
    }
    // 20,000 ids of one millisecond, across many refills of the pool: none twice.
    expect(new Set(ids).size).toBe(ids.length);
  });
});
