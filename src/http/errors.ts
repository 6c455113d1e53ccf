/**
 * Every error the REST API answers with: a stable code, its HTTP status and a
 * message that says what to do. Rendered as `{"error":{"code","message"}}` by
 * `error-handler.ts`; the README's error table mirrors this catalogue.
 */
export const API_ERRORS = {
  VALIDATION_FAILED: { status: 400, message: 'Request is invalid' },
  MALFORMED_JSON: { status: 400, message: 'Request body is not valid JSON' },
  MALFORMED_PATH: { status: 400, message: 'Request path has a bad percent-encoding' },
  MALFORMED_BODY: { status: 400, message: 'Request body could not be read: it does not decode with its Content-Encoding, or its length differs from Content-Length' },
  REQUEST_ABORTED: { status: 400, message: 'Request was aborted by the client before its body arrived' },
  SUBPROTOCOL_REQUIRED: { status: 400, message: 'WebSocket upgrade without the echo-protocol subprotocol' },
  UNAUTHORIZED: { status: 401, message: 'HTTP Basic credentials required' },
  FORBIDDEN: { status: 403, message: 'The API key lacks the scope this operation needs' },
  NOT_FOUND: { status: 404, message: 'Not found' },
  CONFLICT: { status: 409, message: 'Conflict with the current state' },
  EVENTS_GONE: { status: 410, message: 'The events after this id are no longer kept (EVENTS_RETENTION_HOURS); resynchronise, then follow the feed from the oldest id kept' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'Request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Content-Type must be application/json' },
  UNSUPPORTED_CHARSET: { status: 415, message: 'The body must be UTF-8 (Content-Type charset=utf-8, or no charset)' },
  UNSUPPORTED_CONTENT_ENCODING: { status: 415, message: 'Content-Encoding must be identity, gzip, deflate or br' },
  QUEUE_FULL: { status: 429, message: 'Too many queued actuations for this device' },
  RATE_LIMITED: { status: 429, message: 'This API key is over its rate limit; retry after the seconds in Retry-After' },
  INTERNAL: { status: 500, message: 'Internal server error' },
  DATABASE_UNAVAILABLE: { status: 503, message: 'Database unavailable; retry later' },
  TOO_MANY_SUBSCRIBERS: { status: 503, message: 'This instance serves as many change-feed subscribers as it may (EVENTS_MAX_SUBSCRIBERS); retry later or on another instance' },
  SHUTTING_DOWN: { status: 503, message: 'Server shutting down; retry on another instance' },
} as const;

export type ApiErrorCode = keyof typeof API_ERRORS;

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  constructor(
    readonly code: ApiErrorCode,
    message: string = API_ERRORS[code].message,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.status = API_ERRORS[code].status;
  }
}
