/** Thrown by `eventually` when its deadline passes; carries what it last saw. */
export class EventuallyTimeout extends Error {
  override name = 'EventuallyTimeout';
  constructor(
    readonly lastValue: unknown,
    readonly timeoutMs: number,
  ) {
    super(`condition not met within ${timeoutMs} ms; last value: ${show(lastValue)}`);
  }
}

function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 2_000 ? `${text.slice(0, 2_000)}… (${text.length} chars)` : text;
}

/**
 * Polls `fn` until `ok` holds and returns that value. When `timeoutMs` passes first it
 * throws `EventuallyTimeout` with the last value seen: a wait never passes quietly.
 * An exception from `fn` propagates at once.
 */
export async function eventually<T>(fn: () => Promise<T> | T, ok: (value: T) => boolean, timeoutMs = 10_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new EventuallyTimeout(value, timeoutMs);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Awaits `promise` for at most `timeoutMs`; past that it throws, naming `what` did not happen. */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
