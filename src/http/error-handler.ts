/**
 * The one place errors become HTTP responses. 4xx are logged at info, 5xx at error.
 * PostgreSQL connection failures become 503 so that callers know to retry.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseUnavailable } from '../db/errors.js';
import { ApiError } from './errors.js';
import { fromFrameworkError } from './framework-errors.js';

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const framework = fromFrameworkError(err);
  if (framework) return framework;
  if (isDatabaseUnavailable(err)) return new ApiError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  return new ApiError('INTERNAL', undefined, { cause: err });
}

/** Renders every error (fastify's `setErrorHandler`); `onDatabaseUnavailable` is told of each request the database failed (metrics). */
export function makeErrorHandler(onDatabaseUnavailable?: () => void) {
  return (err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void => {
    // The client went away before its body arrived (it never sees this answer): not a server error.
    const aborted = request.raw.readableAborted && (err as { code?: unknown }).code === 'ECONNRESET';
    const apiError = aborted ? new ApiError('REQUEST_ABORTED', undefined, { cause: err }) : toApiError(err);
    if (apiError.code === 'DATABASE_UNAVAILABLE') onDatabaseUnavailable?.();
    const log = request.raw.log;
    if (apiError.status >= 500) log?.error({ err }, `request failed: ${apiError.code}`);
    else log?.info({ code: apiError.code, message: apiError.message }, 'request rejected');
    if (reply.sent || reply.raw.headersSent) return;
    void reply.code(apiError.status).send({ error: { code: apiError.code, message: apiError.message } });
  };
}

/** The path of a request, without its query (as sent: not decoded). */
export function pathOf(request: FastifyRequest): string {
  const url = request.url;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
