/**
 * Request bodies: JSON in UTF-8, identity/gzip/deflate/br, within a size limit, decided
 * from the headers before a byte of the body is read.
 *
 * body-parser does the reading and parsing, but on its own it would (a) accept any
 * `utf-*` charset, (b) accept `zstd` on some Node versions only, and (c) answer a
 * declared Content-Length above the limit only after reading off the whole declared
 * body, so a lying `Content-Length: 1000000000000` waited for the request timeout (408)
 * instead of getting its 413. Here those are refused at once; a 413 also closes the
 * connection, since the rest of that body is never going to be read.
 */
import express, { type RequestHandler } from 'express';
import { ApiError } from './errors.js';

export const JSON_TYPES = ['application/json', 'application/*+json'];

/** Content-Encodings a body may have; the limit applies to the decoded size. */
export const CONTENT_ENCODINGS = ['identity', 'gzip', 'deflate', 'br'] as const;

/** `limitFor(req)` picks the body limit per request (bulk submissions get a larger one). */
export function jsonBody(options: { limitFor: (req: express.Request) => number; limits: readonly number[] }): RequestHandler {
  const parsers = new Map(options.limits.map((limit) => [limit, express.json({ limit, type: JSON_TYPES })]));
  return (req, res, next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return next();
    if (!req.is(JSON_TYPES)) return next(new ApiError('UNSUPPORTED_MEDIA_TYPE'));
    const charset = charsetOf(req.headers['content-type']);
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return next(new ApiError('UNSUPPORTED_CHARSET', `charset "${charset.slice(0, 40)}" is not supported; send UTF-8`));
    }
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (!(CONTENT_ENCODINGS as readonly string[]).includes(encoding)) {
      return next(new ApiError('UNSUPPORTED_CONTENT_ENCODING'));
    }
    const limit = options.limitFor(req);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      res.setHeader('Connection', 'close');
      return next(new ApiError('PAYLOAD_TOO_LARGE', `Request body is larger than the limit (${limit} bytes)`));
    }
    parsers.get(limit)!(req, res, next);
  };
}

function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '');
  return match ? match[1]!.toLowerCase() : undefined;
}
