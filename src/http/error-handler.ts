/**
 * The one place errors become HTTP responses. 4xx are logged at info, 5xx at error.
 * PostgreSQL connection failures become 503 so that callers know to retry.
 */
import { isDatabaseUnavailable } from '../db/pool.js';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ApiError } from './errors.js';

// Connection-level failures: the database is down or unreachable, not a bug in the request.
// 3D000/57P04: our database was dropped or renamed; 53300: the server has no connection slots left.
const DATABASE_DOWN_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE',
  '57P01', '57P02', '57P03', '57P04', '08000', '08001', '08003', '08006', '3D000', '53300',
]);

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as { type?: string; status?: number; code?: string; message?: string };
  if (e.type === 'entity.too.large') return new ApiError('PAYLOAD_TOO_LARGE', 'Request body is larger than the limit', { cause: err });
  if (e.type === 'entity.parse.failed') return new ApiError('MALFORMED_JSON', undefined, { cause: err });
  if (e.code && DATABASE_DOWN_CODES.has(e.code)) return new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  if (e.message?.includes('timeout exceeded when trying to connect') || e.message?.includes('Connection terminated')) {
    return new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  }
  // The full definition (query and flush timeouts, 57014, 25P03, causes…), in db/pool; the two checks above are a subset of it.
  if (isDatabaseUnavailable(err)) return new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  return new ApiError('INTERNAL', undefined, { cause: err });
}

/** Renders every error; `onDatabaseUnavailable` is told of each request the database failed (metrics). */
export function makeErrorHandler(onDatabaseUnavailable?: () => void): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const apiError = toApiError(err);
    if (apiError.code === 'DATABASE_UNAVAILABLE') onDatabaseUnavailable?.();
    const log = req.log;
    if (apiError.status >= 500) log?.error({ err }, `request failed: ${apiError.code}`);
    else log?.info({ code: apiError.code, message: apiError.message }, 'request rejected');
    if (res.headersSent) return;
    res.status(apiError.status).json({ error: { code: apiError.code, message: apiError.message } });
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new ApiError('NOT_FOUND', `No route for ${req.method} ${req.path}`));
};
