/**
 * What PostgreSQL will store. It refuses U+0000 in `text` and in `jsonb` strings, and a
 * lone UTF-16 surrogate has no UTF-8 form (`jsonb` refuses its `\ud800` escape; `text`
 * would get U+FFFD silently). Group commit puts strangers' items in one transaction, so
 * everything that reaches a batch is checked here first: one client's bad string must
 * be that client's 400, never everyone's 500.
 */

/** True when PostgreSQL stores `s` as given. */
export function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

/** Why a string cannot be stored, for error messages. */
export const UNSTORABLE_TEXT_MESSAGE = 'must not contain U+0000 or an unpaired UTF-16 surrogate';

/** Deepest nesting accepted in a JSON value from a client (JSON.stringify recurses; PostgreSQL's jsonb limit is far deeper). */
export const MAX_JSON_DEPTH = 32;

/**
 * The path (`["params", 0, "value"]`-style, as an array) of the first string or key in
 * `value` that cannot be stored, of the first number that is not finite (JSON.parse reads
 * `1e400` as Infinity, which JSON.stringify would turn into null: stored and sent as
 * something the client did not send), or of the first value nested deeper than `maxDepth`;
 * `undefined` when all of it can be stored. Iterative, so a hostile depth cannot overflow the stack.
 */
export function findUnstorable(value: unknown, maxDepth = MAX_JSON_DEPTH): { path: (string | number)[]; reason: 'text' | 'number' | 'depth' } | undefined {
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!;
    if (typeof v === 'string') {
      if (!isStorableText(v)) return { path, reason: 'text' };
      continue;
    }
    if (typeof v === 'number' && !Number.isFinite(v)) return { path, reason: 'number' };
    if (v === null || typeof v !== 'object') continue;
    if (path.length >= maxDepth) return { path, reason: 'depth' };
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: [...path, i] });
      continue;
    }
    const entries = Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i]!;
      if (!isStorableText(key)) return { path: [...path, key], reason: 'text' };
      stack.push({ value: child, path: [...path, key] });
    }
  }
  return undefined;
}
