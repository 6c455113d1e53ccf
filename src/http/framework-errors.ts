/**
 * Errors raised by express, its router and body-parser (raw-body, zlib) mapped onto the
 * catalogue, so that a client's bad request is a documented 4xx and never a 500.
 *
 * body-parser's errors carry a `type` (see its README, "Errors"); the router's failed
 * percent-decoding of a path parameter is a `URIError` with status 400; a compressed
 * body that does not inflate is zlib's error with status 400 and no type.
 */
import { ApiError, type ApiErrorCode } from './errors.js';

const BODY_PARSER_TYPES: Record<string, ApiErrorCode> = {
  'entity.parse.failed': 'MALFORMED_JSON',
  'entity.too.large': 'PAYLOAD_TOO_LARGE',
  'encoding.unsupported': 'UNSUPPORTED_CONTENT_ENCODING',
  'charset.unsupported': 'UNSUPPORTED_CHARSET',
  'request.aborted': 'REQUEST_ABORTED',
  'request.size.invalid': 'MALFORMED_BODY',
  // Only the urlencoded parser raises these; this API parses JSON only, but a 4xx is still right.
  'parameters.too.many': 'PAYLOAD_TOO_LARGE',
  'depth.exceeded': 'VALIDATION_FAILED',
  // The server's own mistakes (the body was read twice, or a verify hook threw): 500 is right.
  'stream.encoding.set': 'INTERNAL',
  'stream.not.readable': 'INTERNAL',
  'entity.verify.failed': 'INTERNAL',
};

const MESSAGES: Partial<Record<ApiErrorCode, string>> = {
  PAYLOAD_TOO_LARGE: 'Request body is larger than the limit',
};

/** The catalogue error for an express/router/body-parser error, or `undefined` when `err` is not one. */
export function fromFrameworkError(err: unknown): ApiError | undefined {
  if (err instanceof URIError && (err as { status?: number }).status === 400) {
    return new ApiError('MALFORMED_PATH', 'Request path has a bad percent-encoding (each % must start a UTF-8 byte as two hex digits)', { cause: err });
  }
  const e = err as { type?: unknown; status?: unknown; expose?: unknown; code?: unknown };
  if (typeof e !== 'object' || e === null) return undefined;
  if (typeof e.type === 'string' && e.type in BODY_PARSER_TYPES) {
    const code = BODY_PARSER_TYPES[e.type]!;
    return new ApiError(code, MESSAGES[code], { cause: err });
  }
  // A gzip/deflate/br body that does not decode: zlib's error, given status 400 by body-parser.
  if (e.status === 400 && typeof e.code === 'string' && (e.code.startsWith('Z_') || e.code.startsWith('ERR_'))) {
    return new ApiError('MALFORMED_BODY', 'Request body does not decode with its Content-Encoding', { cause: err });
  }
  // Any other client error http-errors marks as safe to show (status < 500): keep it a 4xx.
  if (e.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.status === 413) return new ApiError('PAYLOAD_TOO_LARGE', MESSAGES.PAYLOAD_TOO_LARGE, { cause: err });
    if (e.status === 415) return new ApiError('UNSUPPORTED_MEDIA_TYPE', undefined, { cause: err });
    return new ApiError('MALFORMED_BODY', undefined, { cause: err });
  }
  return undefined;
}
