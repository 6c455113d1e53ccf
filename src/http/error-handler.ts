/**
 * The one place errors become HTTP responses. 4xx are logged at info, 5xx at error.
 * PostgreSQL connection failures become 503 so that callers know to retry.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { isDatabaseUnavailable } from '../db/pool.js';
import { ApiError } from './errors.js';

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as { type?: string; status?: number; code?: string; message?: string };
  if (e.type === 'entity.too.large') return new ApiError('PAYLOAD_TOO_LARGE', 'Request body is larger than the limit', { cause: err });
  if (e.type === 'entity.parse.failed') return new ApiError('MALFORMED_JSON', undefined, { cause: err });
  // Refused, reset, timed out (checkout, connect, query), terminated (57P01…): one definition, in db/pool.
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
