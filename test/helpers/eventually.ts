/** Polls `fn` until `ok` holds or the deadline passes; returns the last value (assert on it). */
export async function eventually<T>(fn: () => Promise<T> | T, ok: (value: T) => boolean, timeoutMs = 10_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
