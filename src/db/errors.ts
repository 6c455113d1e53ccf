/**
 * How a database error is classified, in one place: the HTTP layer (503 or not), the
 * batchers (split a failed batch, or fail it whole) and the DSS pipeline (skip an
 * event, or replay it) all ask these two questions.
 */

// Connection-level failures: the database is down, unreachable, restarting or too slow, not a
// bug in the request. 57P01-57P05: administrator shutdown, crash shutdown, starting up, database
// dropped, idle session timeout; 57014: statement_timeout; 25P03: idle-in-transaction timeout;
// 08xxx: connection exceptions; 3D000: our database was dropped or renamed; 53300: no
// connection slots left; 25006: a read-only server (a standby after a failover) refused a write.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '57P04', '57P05', '57014', '25P03', '25006',
  '08000', '08001', '08003', '08004', '08006', '08P01', '3D000', '53300',
  // db/batcher.ts: a flush past its deadline; an item not tried because an earlier one of its key failed.
  'DATABASE_TIMEOUT', 'EARLIER_ITEM_FAILED',
]);
// pg and pg-pool report these without a code.
const UNAVAILABLE_MESSAGES = [
  'timeout exceeded when trying to connect',
  'Connection terminated',
  'Query read timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
];

/** Whether `err` says the database could not be reached or did not answer in time (so: retry later, HTTP 503). */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 3) return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (UNAVAILABLE_CODES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code))) return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.some((m) => (e.message as string).includes(m))) return true;
  // net's connect to several addresses fails with an AggregateError of the attempts.
  if (Array.isArray(e.errors) && e.errors.some((inner) => isDatabaseUnavailable(inner, depth + 1))) return true;
  return isDatabaseUnavailable(e.cause, depth + 1);
}

/**
 * PostgreSQL refused this data for good (class 22 data exception, class 23 integrity
 * violation other than the unique-violation race callers retry, class 54 program limit):
 * retrying the same item fails again. A caller may drop such an item (the DSS pipeline does).
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || code.length !== 5 || code === '23505') return false;
  return code.startsWith('22') || code.startsWith('23') || code.startsWith('54');
}
