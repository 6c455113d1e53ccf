/**
 * Reconnect delays the way device agents should compute them: exponential, capped,
 * with "equal jitter" (half the step fixed, half random) so that devices dropped
 * together, as when an instance shuts down, do not come back together.
 */
export interface BackoffOptions {
  /** Delay step of the first retry; the delay is between half of it and all of it. (Default: 500) */
  initialMs?: number;
  /** Largest step. (Default: 30 000) */
  maxMs?: number;
}

export const BACKOFF_DEFAULTS = { initialMs: 500, maxMs: 30_000 } as const;

/** Delay before retry number `attempt` (0 for the first retry). `random` is injectable for tests. */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initialMs = options.initialMs ?? BACKOFF_DEFAULTS.initialMs;
  const maxMs = options.maxMs ?? BACKOFF_DEFAULTS.maxMs;
  const step = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}
