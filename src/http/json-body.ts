/**
 * Request bodies: JSON in UTF-8, identity/gzip/deflate/br, within the route's size limit
 * (fastify's per-route `bodyLimit`, counted after decoding), decided from the headers
 * before a byte of the body is read.
 *
 * A `preParsing` hook refuses, at once, a body that is not JSON (415), any charset but
 * UTF-8 (415), a Content-Encoding other than the four (415), and a declared
 * Content-Length over the limit (413; the connection is closed too, since the rest of
 * that body is never going to be read, so a lying `Content-Length: 1000000000000` gets
 * its 413 at once instead of waiting for the request timeout); it returns the decoding
 * stream. fastify's body reader then counts the decoded bytes against the limit and the
 * encoded ones against Content-Length, and the JSON parser below parses.
 *
 * Edges (README, "HTTP edges"): a request without a body (no Transfer-Encoding,
 * Content-Length absent or 0) is never refused for its Content-Type; a body of GET or
 * HEAD is not read at all (nothing is parsed, nothing refused); JSON must be an object
 * or an array at the top (body-parser's `strict`), an empty chunked body is `{}`, and a
 * leading BOM is dropped. Keys such as `__proto__` are kept as data (plain `JSON.parse`):
 * the schemas decide about them.
 */
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';
import { routeConfigOf } from './request-context.js';

/** Content-Encodings a body may have; the limit applies to the decoded size. */
export const CONTENT_ENCODINGS = ['identity', 'gzip', 'deflate', 'br'] as const;

const JSON_MEDIA_TYPE = /^application\/(json|[^\s/;]+\+json)$/;
/** The same, as fastify matches a parser: against the whole Content-Type, parameters included. */
const JSON_CONTENT_TYPE = /^application\/(?:json|[^\s/;]+\+json)(?:$|[\s;])/i;

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaTypeOf(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const semicolon = contentType.indexOf(';');
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

/** `application/json` or `application/*+json`. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return JSON_MEDIA_TYPE.test(mediaTypeOf(contentType));
}

function hasBody(request: FastifyRequest): boolean {
  const headers = request.headers;
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
}

/** Adds the `preParsing` checks and the JSON parser to `app`, replacing fastify's own parsers. */
export function jsonBody(app: FastifyInstance): void {
  app.addHook('preParsing', (request: FastifyRequest, reply: FastifyReply, payload, done) => {
    const method = request.method;
    if (method === 'GET' || method === 'HEAD' || !hasBody(request)) return done(null, payload);
    const contentType = request.headers['content-type'];
    if (!isJsonMediaType(contentType)) return done(new ApiError('UNSUPPORTED_MEDIA_TYPE'));
    const charset = charsetOf(contentType);
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return done(new ApiError('UNSUPPORTED_CHARSET', `charset "${charset.slice(0, 40)}" is not supported; send UTF-8`));
    }
    const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (!(CONTENT_ENCODINGS as readonly string[]).includes(encoding)) return done(new ApiError('UNSUPPORTED_CONTENT_ENCODING'));
    const limit = routeConfigOf(request).bodyLimit ?? request.routeOptions.bodyLimit;
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reply.raw.setHeader('Connection', 'close');
      return done(new ApiError('PAYLOAD_TOO_LARGE', `Request body is larger than the limit (${limit} bytes)`));
    }
    done(null, encoding === 'identity' ? payload : decoded(payload, encoding));
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_CONTENT_TYPE, { parseAs: 'buffer' }, (request, body, done) => {
    if (!hasBody(request)) return done(null, undefined);
    let parsed: unknown;
    try {
      parsed = parseJson((body as Buffer).toString('utf8'));
    } catch (err) {
      return done(err as Error, undefined);
    }
    done(null, parsed);
  });
  // Anything else reaches here only without a body (the hook above refused the rest), or on GET/HEAD.
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
}

function parseJson(text: string): unknown {
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let i = start;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  if (i === text.length) return {};
  if (text[i] !== '{' && text[i] !== '[') throw new ApiError('MALFORMED_JSON');
  try {
    return JSON.parse(start === 0 ? text : text.slice(start));
  } catch (err) {
    throw new ApiError('MALFORMED_JSON', undefined, { cause: err });
  }
}

/** The decoded body, with the encoded bytes read so far as `receivedEncodedLength` (fastify checks them against Content-Length). */
function decoded(raw: NodeJS.ReadableStream, encoding: string): Transform {
  const decoder = encoding === 'gzip' ? zlib.createGunzip() : encoding === 'deflate' ? zlib.createInflate() : zlib.createBrotliDecompress();
  const counted = decoder as unknown as Transform & { receivedEncodedLength: number };
  counted.receivedEncodedLength = 0;
  raw.on('data', (chunk: Buffer) => (counted.receivedEncodedLength += chunk.length));
  raw.on('error', (err) => decoder.destroy(err));
  raw.pipe(decoder);
  return counted;
}

function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '');
  return match ? match[1]!.toLowerCase() : undefined;
}

