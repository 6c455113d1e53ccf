/**
 * Client mistakes (an ack for an unknown actuation, a malformed message, a refused
 * token) are the client's to repeat as often as it likes; one log line each would let
 * any client grow the log without bound. A sampler logs the first `perWindow` of a kind
 * in each window and then one summary line with how many it left out. Callers count
 * every occurrence in a metric as well, so nothing is invisible.
 */
import type { Logger } from './logger.js';

export interface LogSampler {
  /** Logs `msg` at `level` unless this kind's budget for the current window is spent. */
  log(kind: string, level: 'debug' | 'info' | 'warn', fields: object, msg: string): void;
}

export function makeLogSampler(logger: Logger, options: { perWindow?: number; windowMs?: number; now?: () => number } = {}): LogSampler {
  const perWindow = options.perWindow ?? 10;
  const windowMs = options.windowMs ?? 60_000;
  const now = options.now ?? Date.now;
  // kind -> window start, lines logged and lines left out in it. Kinds are the callers' constants, so this stays small.
  const windows = new Map<string, { start: number; logged: number; suppressed: number }>();

  return {
    log(kind, level, fields, msg) {
      const t = now();
      let w = windows.get(kind);
      if (!w || t - w.start >= windowMs) {
        if (w && w.suppressed > 0) logger.warn({ kind, suppressed: w.suppressed, windowMs }, 'log: repeated client mistakes left out of the log');
        w = { start: t, logged: 0, suppressed: 0 };
        windows.set(kind, w);
      }
      if (w.logged < perWindow) {
        w.logged++;
        logger[level]({ ...fields, kind }, msg);
      } else {
        w.suppressed++;
      }
    },
  };
}
