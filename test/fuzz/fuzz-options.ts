/**
 * How much the fuzz suite runs: a fixed seed by default (the same cases every run, so CI
 * is reproducible), `FUZZ_SEED=<n>` for other cases, `FUZZ_RUNS=<factor>` for more of them
 * (e.g. FUZZ_RUNS=10 for ten times as many). fast-check prints the seed and the path of a
 * failing case with the shrunk counterexample; rerun with that FUZZ_SEED to reproduce.
 * (Test code reads the environment here; the server's settings stay in config.ts.)
 */
import fc from 'fast-check';

export const FUZZ_SEED = process.env.FUZZ_SEED === undefined ? 20261202 : Number(process.env.FUZZ_SEED);
const FACTOR = process.env.FUZZ_RUNS === undefined ? 1 : Number(process.env.FUZZ_RUNS);

/** Options for `fc.assert`: `numRuns` scaled by FUZZ_RUNS, the seed, and shrinking kept short for network cases. */
export function runs(numRuns: number, extra: fc.Parameters<unknown> = {}): fc.Parameters<unknown> {
  return { seed: FUZZ_SEED, numRuns: Math.max(1, Math.round(numRuns * FACTOR)), interruptAfterTimeLimit: undefined, ...extra };
}

/** A test's timeout for `ms` at the default run count, scaled by FUZZ_RUNS (more cases take longer). */
export function fuzzTimeout(ms: number): number {
  return Math.max(ms, Math.round(ms * FACTOR));
}

/** Strings that PostgreSQL, JSON or a careless handler may trip over, mixed with ordinary ones. */
const SPECIALS = ['\u0000', '\ud800', '\udfff', '\udbff\udc00', '\uffff', '\ufeff', '\u{10ffff}', '\u202e', '\u2028', '%00', '%', '%ZZ', '%C0%AF', '..', '/', '\\', '"', "'", '{{value}}', '${x}', '<script>'];

export const edgeString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength }) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength }) },
    { weight: 3, arbitrary: fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom(...SPECIALS), fc.string({ maxLength: 8 })).map(([a, b, c]) => a + b + c) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', 'x'.repeat(257), 'x'.repeat(5000)) },
  );

/** Any JSON value, with edge strings in keys and values. */
export const edgeJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.constantFrom(0, -1, 1e300, -0, 2 ** 53 + 1),
    edgeString(),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(edgeString(10), tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** Values of the wrong type for any field. */
export const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);

/** JSON text nested `depth` deep (arrays or objects): built as text, since JSON.stringify itself would overflow. */
export const deepJsonText = fc
  .tuple(fc.integer({ min: 100, max: 20_000 }), fc.boolean())
  .map(([depth, arrays]) => (arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)));
