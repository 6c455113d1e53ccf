/**
 * What the three CLIs (token, device, dss-sim) share: `node:util` parseArgs, usage on
 * `--help` (stdout, exit 0), and for any bad argument a one-line reason plus the usage
 * on stderr and exit 64 (EX_USAGE), never a stack trace. Failures after the arguments
 * were accepted print their message and exit 1.
 */
import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT_USAGE = 64;

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Cli<O extends Options> {
  values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>['values'];
  positionals: string[];
  /** Stops with `message` and the usage, exit 64. */
  fail(message: string): never;
}

export function parseCli<O extends Options>(usage: string, options: O, argv: string[] = process.argv.slice(2)): Cli<O> {
  const fail = (message: string): never => {
    process.stderr.write(`${message}\n${usage}\n`);
    process.exit(EXIT_USAGE);
  };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs' advice for an unknown option ("place it … after '--'") misleads under npm run, which takes that '--' itself.
    const { code, message } = err as NodeJS.ErrnoException;
    return fail(code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? message.split('. ')[0]! : message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return { values: parsed.values as Cli<O>['values'], positionals: parsed.positionals, fail };
}

/** A number from an option's text, within bounds, or a usage error naming the option. */
export function numberOption(
  cli: { fail(message: string): never },
  name: string,
  text: string | undefined,
  rule: { min?: number; above?: number; integer?: boolean; what: string },
): number {
  const n = Number(text);
  const ok =
    text !== undefined &&
    text.trim() !== '' &&
    Number.isFinite(n) &&
    (!rule.integer || Number.isInteger(n)) &&
    (rule.min === undefined || n >= rule.min) &&
    (rule.above === undefined || n > rule.above);
  if (!ok) cli.fail(`--${name} must be ${rule.what}, got "${text}"`);
  return n;
}

/** A file an argument names, read, or a usage error saying which file and why. */
export function readNamedFile(cli: { fail(message: string): never }, what: string, file: string, hint = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return cli.fail(`${what} ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}${hint ? `; ${hint}` : ''}`);
  }
}

/** Runs the CLI's body; an error it throws is printed as one line (exit 1), a UsageError with the usage (exit 64). */
export function runCli(usage: string, body: () => Promise<void> | void): void {
  Promise.resolve()
    .then(body)
    .catch((err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`${err.message}\n${usage}\n`);
        process.exit(EXIT_USAGE);
      }
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
