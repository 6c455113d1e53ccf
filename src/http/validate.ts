import type { z } from 'zod';
import { ApiError } from './errors.js';

/** Parses untrusted input with a zod schema; a failure is a 400 naming the first bad field. */
export function validate<T extends z.ZodType>(schema: T, rawInput: unknown, where = 'body'): z.output<T> {
  const result = schema.safeParse(rawInput);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join('.') : where;
  throw new ApiError('VALIDATION_FAILED', `${field}: ${issue.message}`);
}
