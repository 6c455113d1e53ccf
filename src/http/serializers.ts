/**
 * fastify's compiled response serializers (fast-json-stringify) for the hot routes, from
 * the response schemas (`response-schemas.ts`, the single source: the OpenAPI document
 * comes from the same ones). zod's JSON Schema with one change: a nullable value
 * (`anyOf: [T, {type: null}]`) becomes a type list (`type: [T, "null"]`), which
 * fast-json-stringify writes directly; for `anyOf` it would validate each answer against
 * the branches with ajv, slower than `JSON.stringify`.
 *
 * Only where the answer's shape is flat and fixed (a submission's summary): fast-json-
 * stringify drops members the schema does not name, so a schema that lags its route would
 * silently cut answers; `test/unit/serializers.test.ts` checks the output against `JSON.stringify`.
 */
import { z } from 'zod';
import type { ActuationSummary } from '../actuations/types.js';
import { actuationSummary } from './response-schemas.js';

export function serializerSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
  return nullableAsTypeList(rest) as Record<string, unknown>;
}

function nullableAsTypeList(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(nullableAsTypeList);
  if (node === null || typeof node !== 'object') return node;
  const out = Object.fromEntries(Object.entries(node).map(([key, value]) => [key, nullableAsTypeList(value)])) as Record<string, unknown>;
  const anyOf = out.anyOf as Record<string, unknown>[] | undefined;
  if (anyOf?.length !== 2) return out;
  const isNull = (branch: Record<string, unknown>) => branch.type === 'null' && Object.keys(branch).length === 1;
  const other = anyOf.find((branch) => !isNull(branch));
  if (!other || !anyOf.some(isNull) || typeof other.type !== 'string') return out;
  const { anyOf: _anyOf, ...rest } = out;
  return { ...rest, ...other, type: [other.type, 'null'] };
}

/** `POST /v1/devices/:deviceId/actuations`: 202 created, 200 for a repeated Idempotency-Key. */
export const submittedActuationResponse = (() => {
  const summary = serializerSchema(actuationSummary);
  return { 200: summary, 202: summary };
})();

/**
 * `POST /v1/actuations`: the `{ results }` of a bulk submission as `JSON.stringify` writes
 * it, built by hand for the summaries (the 202/200 items): `JSON.stringify` of 1,000 results
 * cost 2-4 µs per item in `request-path-micro.ts`, half of it `Date#toJSON`; the items of one
 * batch share their `createdAt` (the transaction's time) and mostly their `expiresAt`, so each
 * is formatted once. Anything else (an item's error) goes through `JSON.stringify`.
 * `test/unit/serializers.test.ts` checks the output against `JSON.stringify`.
 */
export function bulkResultsJson(answer: { results: readonly BulkResult[] }): string {
  const { results } = answer;
  const created = lastDate();
  const expires = lastDate();
  let out = '{"results":[';
  for (let i = 0; i < results.length; i++) {
    const result = results[i]!;
    if (i > 0) out += ',';
    const a = result.actuation;
    if (a === undefined || !isSummary(a)) {
      out += JSON.stringify(result);
      continue;
    }
    out += `{"index":${number(result.index)},"status":${number(result.status)},"actuation":{"id":${JSON.stringify(a.id)},"deviceId":${JSON.stringify(a.deviceId)},"seq":${number(a.seq)},"status":${JSON.stringify(a.status)},"createdAt":${created(a.createdAt)},"expiresAt":${expires(a.expiresAt)}}}`;
  }
  return `${out}]}`;
}

export type BulkResult =
  | { index: number; status: number; actuation: ActuationSummary; error?: undefined }
  | { index: number; status: number; error: { code: string; message: string }; actuation?: undefined };

/** A summary as `insertActuations` builds it (these six members, in this order); anything else is written by `JSON.stringify`. */
function isSummary(a: ActuationSummary): boolean {
  return (
    typeof a.id === 'string' && typeof a.deviceId === 'string' && typeof a.seq === 'number' && typeof a.status === 'string' &&
    a.createdAt instanceof Date && (a.expiresAt === null || a.expiresAt instanceof Date)
  );
}

/** A number as JSON writes it (`null` for NaN and the infinities). */
function number(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** A Date (or null) as JSON writes it, remembering the last one formatted. */
function lastDate(): (d: Date | null) => string {
  let lastMs = Number.NaN;
  let lastJson = 'null';
  return (d) => {
    if (d === null) return 'null';
    const ms = d.getTime();
    if (ms === lastMs) return lastJson;
    if (!Number.isFinite(ms)) return 'null';
    lastMs = ms;
    lastJson = `"${d.toISOString()}"`;
    return lastJson;
  };
}
