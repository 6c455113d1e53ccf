/**
 * The one place errors become HTTP responses. 4xx are logged at info, 5xx at error.
 * PostgreSQL connection failures become 503 so that callers know to retry.
 */
import { isDatabaseUnavailable } from '../db/errors.js';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ApiError } from './errors.js';
import { fromFrameworkError } from './framework-errors.js';

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const framework = fromFrameworkError(err);
  if (framework) return framework;
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
