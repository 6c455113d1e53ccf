/**
 * Why a DSS frame or event was skipped. Skips are counted in the stream's
 * `errors`, logged with the code, and never close the connection.
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
} as const;

export type DssErrorCode = keyof typeof DSS_ERRORS;
