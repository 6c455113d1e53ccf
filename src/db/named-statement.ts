/**
 * Named prepared statements for the hot statements whose planning costs about as much as
 * running them (the change feed's readers, the webhook sender's per-delivery record):
 * node-postgres prepares a named statement once per connection and then only binds and
 * executes it, so PostgreSQL keeps its plan (a custom plan for the first five executions,
 * then the generic one unless that is estimated dearer: `plan_cache_mode`, default auto).
 *
 * The name is derived from the text, so one name always means one text: node-postgres
 * refuses the same name with another text on a connection, and a text built from parts
 * (a filter's conditions) gets one statement per shape. The text must take every value
 * as a parameter (an interpolated value would make a statement per value).
 */
import { createHash } from 'node:crypto';

export interface NamedStatement {
  name: string;
  text: string;
}

export function namedStatement(prefix: string, text: string): NamedStatement {
  return { name: `${prefix}_${createHash('sha1').update(text).digest('hex').slice(0, 12)}`, text };
}
