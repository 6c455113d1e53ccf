/**
 * Errors raised by fastify (its router and body reading) and by zlib while a body is
 * decoded, mapped onto the catalogue, so that a client's bad request is a documented 4xx
 * and never a 500.
 *
 * fastify's errors carry a string `code` (`FST_ERR_*`, see its docs/Reference/Errors.md);
 * a compressed body that does not inflate is zlib's error (`Z_*` or `ERR_*` code), which
 * fastify's body reader gives status 400.
 */
import { ApiError, type ApiErrorCode } from './errors.js';

const FASTIFY_CODES: Record<string, ApiErrorCode> = {
  FST_ERR_BAD_URL: 'MALFORMED_PATH',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'MALFORMED_BODY',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_MAX_PARAM_LENGTH: 'VALIDATION_FAILED',
};

const MESSAGES: Partial<Record<ApiErrorCode, string>> = {
  MALFORMED_PATH: 'Request path has a bad percent-encoding (each % must start a UTF-8 byte as two hex digits)',
  PAYLOAD_TOO_LARGE: 'Request body is larger than the limit',
  MALFORMED_BODY: 'Request body could not be read: its length differs from Content-Length',
};

/**
 * The catalogue error for a fastify or body-decoding error, or `undefined` when `err` is not
 * one. (A client that went away mid-body is told apart by its request, in `error-handler.ts`:
 * its ECONNRESET is the same code as a database connection's.)
 */
export function fromFrameworkError(err: unknown): ApiError | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string') return undefined;
  const code = FASTIFY_CODES[e.code];
  if (code) return new ApiError(code, MESSAGES[code], { cause: err });
  // A gzip/deflate/br body that does not decode: zlib's error, given status 400 by fastify's body reader.
  if (e.statusCode === 400 && (e.code.startsWith('Z_') || e.code.startsWith('ERR_'))) {
    return new ApiError('MALFORMED_BODY', 'Request body does not decode with its Content-Encoding', { cause: err });
  }
  // Any other fastify client error (status < 500): keep it a 4xx.
  if (e.code.startsWith('FST_ERR_') && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    if (e.statusCode === 413) return new ApiError('PAYLOAD_TOO_LARGE', MESSAGES.PAYLOAD_TOO_LARGE, { cause: err });
    if (e.statusCode === 415) return new ApiError('UNSUPPORTED_MEDIA_TYPE', undefined, { cause: err });
    return new ApiError('MALFORMED_BODY', undefined, { cause: err });
  }
  return undefined;
}
