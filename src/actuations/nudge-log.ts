/**
 * When each device was last nudged (new actuations committed for it, or actuations put
 * back in the queue), remembered for a short while for every device, connected or not.
 *
 * Why: a device whose session statement found nothing pending for it goes straight to
 * the LIVE lane, without a backlog claim. An actuation committed after that statement's
 * snapshot, whose nudge arrived before the device was in LIVE, would otherwise wait for
 * the next poll; the dispatcher asks this log whether such a nudge came since the session
 * statement was sent, and claims for the device if one may have.
 *
 * Bounded: two generations of at most `maxPerGeneration` devices, a new one every
 * `generationMs` (or when the current is full). What the log no longer holds it does not
 * deny: `nudgedSince` answers true for any time before the older generation began.
 */
export interface NudgeLog {
  /** These devices were nudged now. */
  record(deviceIds: Iterable<string>): void;
  /** Every device was nudged now (nudgeAll: requeues, a LISTEN reconnect). */
  recordAll(): void;
  /** Whether the device may have been nudged at or after `since` (a `now()` reading). */
  nudgedSince(deviceId: string, since: number): boolean;
}

export interface NudgeLogOptions {
  /** Age at which the current generation becomes the older one. (Default: 2,000 ms) */
  generationMs?: number;
  /** Devices per generation. (Default: 50,000) */
  maxPerGeneration?: number;
  /** Monotonic clock in ms. (Default: performance.now) */
  now?: () => number;
}

export function makeNudgeLog(options: NudgeLogOptions = {}): NudgeLog {
  const generationMs = options.generationMs ?? 2_000;
  const maxPerGeneration = options.maxPerGeneration ?? 50_000;
  const now = options.now ?? (() => performance.now());

  let current = new Map<string, number>();
  let currentSince = now();
  let older = new Map<string, number>();
  /** Before this the log knows nothing: the older generation's start. */
  let knownSince = currentSince;
  let allAt = -Infinity;

  function rotateIfDue(at: number): void {
    if (at - currentSince < generationMs && current.size < maxPerGeneration) return;
    older = current;
    knownSince = currentSince;
    current = new Map();
    currentSince = at;
  }

  return {
    record(deviceIds) {
      const at = now();
      rotateIfDue(at);
      for (const deviceId of deviceIds) {
        if (current.size >= maxPerGeneration) rotateIfDue(at);
        current.set(deviceId, at);
      }
    },
    recordAll() {
      allAt = now();
    },
    nudgedSince(deviceId, since) {
      rotateIfDue(now());
      if (since <= knownSince || allAt >= since) return true;
      return (current.get(deviceId) ?? -Infinity) >= since || (older.get(deviceId) ?? -Infinity) >= since;
    },
  };
}
