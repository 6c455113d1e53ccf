/**
 * pino, JSON to stdout. Secrets are redacted by key wherever they sit in a log
 * object, so a token, password or stream key that reaches a log call by mistake
 * still never reaches the output.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/config.js';

export type { Logger };

export const REDACTED_KEYS = ['deviceToken', 'token', 'password', 'streamKey', 'stream_key', 'authorization', 'cookie', 'secret'];

const redactPaths = REDACTED_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/**
 * Fields of node-postgres errors that can quote what was sent: `detail` ("Failing row
 * contains (…)", "Key (…)=(…)"), `where` ("JSON data, line 1: …"), `hint`, `internalQuery`
 * and the positions into it. A parameter value (an actuation's `password` param, say) would
 * reach the log through them. Kept: code, severity, routine, schema/table/column/constraint
 * names (ours, not the client's). `client` is dropped too: some paths attach the whole
 * connection with its parameters.
 */
const DROPPED_ERROR_FIELDS = new Set(['client', 'detail', 'where', 'hint', 'internalQuery', 'internalPosition', 'position', 'parameters', 'values', 'query', 'body']);

/** PostgreSQL quotes the offending input at the end of some messages (`invalid input syntax for type uuid: "…"`). */
const QUOTED_INPUT = /: ".*"$/s;

/**
 * Errors for the log: name, message, stack, own primitive fields except the dropped ones,
 * and the cause chain serialized the same way (pino's own serializer would copy every field
 * and fold each cause's message into the parent's message and stack).
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const isDatabaseError = typeof (err as { severity?: unknown }).severity === 'string' && typeof (err as { code?: unknown }).code === 'string';
  const message = isDatabaseError ? err.message.replace(QUOTED_INPUT, ': "[redacted]"') : err.message;
  const stackFrames = (err.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  const serialized: Record<string, unknown> = {
    type: err.constructor?.name ?? err.name,
    message,
    stack: [`${err.name}: ${message}`, ...stackFrames].join('\n'),
  };
  for (const [key, value] of Object.entries(err)) {
    if (DROPPED_ERROR_FIELDS.has(key) || key in serialized) continue;
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) serialized[key] = value;
  }
  if (err.cause !== undefined && depth < 5) serialized.cause = serializeError(err.cause, depth + 1);
  return serialized;
}

/**
 * `LOG_FORMAT=pretty`: pino-pretty (a development dependency) formats the lines in a
 * worker thread; JSON stays the default, since pretty lines are for people, not collectors.
 */
export function prettyDestination(): pino.DestinationStream {
  return pino.transport({ target: 'pino-pretty', options: { colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } });
}

export function makeLogger(options: { level: LogLevel; instanceId?: string }, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level: options.level,
      base: options.instanceId ? { instanceId: options.instanceId } : {},
      redact: { paths: redactPaths, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
    },
    destination,
  );
}
