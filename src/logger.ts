/**
 * pino, JSON to stdout. Secrets are redacted by key wherever they sit in a log
 * object, so a token, password or stream key that reaches a log call by mistake
 * still never reaches the output.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/config.js';

export type { Logger };

export const REDACTED_KEYS = ['deviceToken', 'token', 'password', 'streamKey', 'stream_key', 'authorization', 'cookie'];

const redactPaths = REDACTED_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/**
 * pino's error serializer copies every enumerable property; node-postgres errors carry
 * the whole `client` (with its connection parameters) on some paths. Keep the error, not that.
 */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const serialized = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  delete serialized.client;
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
