/**
 * Checks an answer of the REST API against what the OpenAPI document declares for it:
 * the status must be one the operation lists, and the body must match that response's
 * schema (JSON Schema 2020-12, which OpenAPI 3.1 uses, with ajv). The test server's
 * `api()` runs every answer through it, so every integration test checks the document.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../src/http/openapi.js';

interface MediaType {
  schema?: Record<string, unknown>;
}
interface Operation {
  operationId: string;
  responses: Record<string, { content?: Record<string, MediaType> }>;
}

const doc = openApiDocument() as { paths: Record<string, Record<string, Operation>>; components: Record<string, unknown> };
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
ajv.addSchema({ $id: 'openapi.json', components: doc.components });

const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
  Object.entries(ops).map(([method, op]) => ({
    method: method.toUpperCase(),
    path,
    pattern: new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, '[^/]+')}$`),
    op,
  })),
);

const validators = new Map<object, ReturnType<typeof ajv.compile>>();
function validatorFor(schema: Record<string, unknown>) {
  let validate = validators.get(schema);
  if (!validate) {
    // The document's local references (#/components/...) point into the schema added above.
    const text = JSON.stringify(schema).replaceAll('"#/components/', '"openapi.json#/components/');
    validate = ajv.compile(JSON.parse(text) as object);
    validators.set(schema, validate);
  }
  return validate;
}

/** The operation a request lands on, if the document describes one. */
export function operationOf(method: string, url: string): { path: string; op: Operation } | undefined {
  // The raw path as the router sees it (no WHATWG normalisation of `.`, `..`, `%2e`), one trailing slash allowed.
  const pathname = url.split('?')[0]!.replace(/(.)\/$/, '$1');
  return operations.find((o) => o.method === method.toUpperCase() && o.pattern.test(pathname));
}

/**
 * Problems with an answer (empty: it matches the document). Answers to requests the
 * document does not describe (an unknown path, another method) are not checked here.
 */
export function checkAgainstDocument(method: string, url: string, status: number, contentType: string | null, body: string): string[] {
  const found = operationOf(method, url);
  if (!found) return [];
  const where = `${method.toUpperCase()} ${found.path} (${found.op.operationId}) answered ${status}`;
  const response = found.op.responses[String(status)];
  if (!response) return [`${where}, which the document does not declare (declared: ${Object.keys(found.op.responses).join(', ')}); body: ${body.slice(0, 300)}`];
  if (!response.content) return body === '' ? [] : [`${where} with a body, but the document declares none`];
  const type = (contentType ?? '').split(';')[0]!.trim();
  const media = response.content[type];
  if (!media) return [`${where} with Content-Type ${contentType}; the document declares ${Object.keys(response.content).join(', ')}`];
  if (type !== 'application/json' || !media.schema) return [];
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return [`${where} with a body that is not JSON: ${body.slice(0, 300)}`];
  }
  const validate = validatorFor(media.schema);
  if (validate(value)) return [];
  return [`${where} with a body that does not match its schema: ${ajv.errorsText(validate.errors, { separator: '; ' })}; body: ${body.slice(0, 500)}`];
}

/** Reads the answer (a clone: the caller can still read the original) and throws if it does not match the document. */
export async function assertMatchesDocument(method: string, url: string, res: Response): Promise<void> {
  const body = await res.clone().text();
  const problems = checkAgainstDocument(method, url, res.status, res.headers.get('content-type'), body);
  if (problems.length > 0) throw new Error(`answer does not match the OpenAPI document: ${problems.join('\n')}`);
}
