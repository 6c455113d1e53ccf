import type { z } from 'zod';
import { MAX_JSON_DEPTH, UNSTORABLE_TEXT_MESSAGE, findUnstorable } from '../db/storable.js';
import { ApiError } from './errors.js';

/**
 * Parses untrusted input with a zod schema; a failure is a 400 naming the first bad field.
 * First, everything PostgreSQL would refuse (U+0000, a lone surrogate, in any string or key;
 * JSON nested deeper than MAX_JSON_DEPTH) is a 400 naming its path: such input must never
 * reach a shared batch, where it would fail strangers' work too.
 */
export function validate<T extends z.ZodType>(schema: T, rawInput: unknown, where = 'body'): z.output<T> {
  const unstorable = unstorableMessage(rawInput, where);
  if (unstorable !== undefined) throw new ApiError('VALIDATION_FAILED', unstorable);
  const result = schema.safeParse(rawInput);
  if (result.success) return result.data;
  throw new ApiError('VALIDATION_FAILED', issueMessage(result.error, where));
}

/** `field: why` for the first string PostgreSQL cannot store or the first too-deep value; `undefined` when all is storable. */
export function unstorableMessage(rawInput: unknown, where = 'body'): string | undefined {
  const found = findUnstorable(rawInput);
  if (!found) return undefined;
  const field = found.path.length > 0 ? found.path.map(printable).join('.') : where;
  if (found.reason === 'number') return `${field}: must be a finite number (a JSON number beyond ±1.8e308 has no value)`;
  return `${field}: ${found.reason === 'depth' ? `is nested deeper than ${MAX_JSON_DEPTH} levels` : UNSTORABLE_TEXT_MESSAGE}`;
}

/** `field: why` for the first issue of a failed parse. */
export function issueMessage(error: z.ZodError, where = 'body'): string {
  const issue = error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join('.') : where;
  return `${field}: ${issue.message}`;
}

/** A path segment fit to echo: a bad key is shown with U+FFFD and \u0000 spelled out, and at most 64 characters. */
function printable(segment: string | number): string {
  if (typeof segment === 'number') return String(segment);
  const shown = segment.toWellFormed().replaceAll('\u0000', '\\u0000');
  return shown.length > 64 ? `${shown.slice(0, 64)}…` : shown;
}
