/**
 * Why a DSS frame, event or rule actuation was skipped, or a connection attempt failed.
 * Each is counted in the stream's `errors`, recorded in its `lastError`, logged with the
 * code (a few per minute per code, then a summary); a skip never closes the connection
 * and the position moves on past a skipped event.
 */
export const DSS_ERRORS = {
  /** No `LEN|` prefix where a frame must start; the rest of the message is unreadable. */
  DSS_ERR_FRAME_PREFIX: 'frame does not start with LEN|',
  /** LEN does not match the payload (neither as UTF-8 bytes nor as UTF-16 code units). */
  DSS_ERR_FRAME_LENGTH: 'frame length does not match its payload',
  /** The payload is not a JSON object. */
  DSS_ERR_FRAME_JSON: 'frame payload is not a JSON object',
  /** A JSON object that is not one of the five DSS event types in a shape we know. */
  DSS_ERR_EVENT_SHAPE: 'event has an unknown type or shape',
  /** A rule's actuation (or the rule state it keeps) would hold text PostgreSQL cannot store (U+0000, a lone surrogate) or nest too deep. */
  DSS_ERR_UNSTORABLE: 'event cannot become an actuation: a field holds text the database cannot store',
  /** The database refused the rule's actuation, or the state row of a stateful rule, for a reason of its own (a data exception, integrity violation or program limit such as a key too long for its index; SQLSTATE in the detail). */
  DSS_ERR_ACTUATION_REFUSED: 'the database refused the actuation of a rule',
  /** The database refused an event's row in the last known state or the event log for a reason of its own (SQLSTATE in the detail); the event's rules still ran. */
  DSS_ERR_STATE_REFUSED: 'the database refused the state or log row of an event',
  /** The stream's WebSocket could not be opened (refused, timed out, or DSS answered the handshake with an HTTP status, e.g. 401 for a bad stream key); retried with backoff. */
  DSS_ERR_CONNECT: 'the stream could not be opened; retrying after backoff',
} as const;

export type DssErrorCode = keyof typeof DSS_ERRORS;
