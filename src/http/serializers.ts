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
