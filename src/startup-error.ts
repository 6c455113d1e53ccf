/**
 * A start-up failure the operator can fix: what went wrong (the message) and what
 * to do about it (the hint). `src/main.ts` logs both at fatal level; the test set-up
 * prints both before it fails.
 */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StartupError';
  }
}
