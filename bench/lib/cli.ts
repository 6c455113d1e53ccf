/** Small helpers every bench subcommand uses: flag parsing, logging, settled promises. */

export function int(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new Error(`--${name} must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new Error(`--${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

export function onOff(name: string, raw: string): boolean {
  if (raw !== 'on' && raw !== 'off') throw new Error(`--${name} must be on or off`);
  return raw === 'on';
}

export function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

/** The values of `Promise.allSettled` results, or the first rejection thrown (after all settled). */
export function settled<T extends readonly PromiseSettledResult<unknown>[]>(results: T): { [K in keyof T]: T[K] extends PromiseSettledResult<infer V> ? V : never } {
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as never;
}
