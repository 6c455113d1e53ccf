/**
 * Reads the services Cloud Foundry binds to the app from `VCAP_SERVICES`:
 * - PostgreSQL: the instance named `mypostgres`, else the first with a `postgres`/`postgresql` tag or label.
 *   The connection string comes from `credentials.uri` (or `url`, `database_uri`), else from its parts
 *   (`hostname`/`host`, `port`, `name`/`dbname`/`database`, `username`/`user`, `password`). TLS follows
 *   `sslmode` (a credential or a query parameter of the URI, libpq meanings) and a CA certificate in PEM
 *   (`sslrootcert`, `ca_certificate` or `sslcert_ca`).
 * - The user-provided service `websocket-ups`: `username` and `password` for the REST API and, optionally,
 *   `devicePublicKey`, the device-token public key in PEM (then `keys/public.pem` need not be pushed).
 *
 * Every failure is a `VcapError` whose message starts with `VCAP_SERVICES:`.
 */
import crypto from 'node:crypto';
import { z } from 'zod';

export const DATABASE_SERVICE_NAME = 'mypostgres';
export const CREDENTIALS_SERVICE_NAME = 'websocket-ups';
/** Keys read from the `websocket-ups` credentials. */
export const CREDENTIALS_SERVICE_KEYS = ['username', 'password', 'devicePublicKey'] as const;

const serviceSchema = z.object({
  name: z.string().optional(),
  label: z.string().optional(),
  tags: z.array(z.string()).optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
});
const vcapSchema = z.record(z.string(), z.array(serviceSchema));
type Service = z.infer<typeof serviceSchema>;

export type DatabaseSsl = false | { rejectUnauthorized: boolean; ca?: string };

export interface VcapServices {
  database?: { uri: string; ssl: DatabaseSsl; serviceName: string };
  apiCredentials?: { username?: string; password?: string };
  /** PEM from `websocket-ups` credentials `devicePublicKey`. */
  devicePublicKey?: string;
}

export class VcapError extends Error {
  override name = 'ConfigError';
  readonly variable = 'VCAP_SERVICES';
  constructor(
    /** What is wrong, without the variable name. */
    readonly detail: string,
  ) {
    super(`VCAP_SERVICES: ${detail}`);
  }
}

export function parseVcapServices(raw: string | undefined): VcapServices {
  if (raw === undefined || raw.trim() === '') return {};
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new VcapError(`is not valid JSON (${(err as Error).message})`);
  }
  const parsed = vcapSchema.safeParse(json);
  if (!parsed.success) throw new VcapError('must be an object of service arrays, as Cloud Foundry writes it');
  const services = Object.values(parsed.data).flat();
  const ups = services.find((s) => s.name === CREDENTIALS_SERVICE_NAME);

  return {
    database: findDatabase(services),
    apiCredentials: ups && { username: str(ups.credentials?.username), password: str(ups.credentials?.password) },
    devicePublicKey: ups && devicePublicKeyOf(ups),
  };
}

// Connection-string parameters that node-postgres would let override the `ssl` option we compute
// (it parses the string last, and treats sslmode=require as verify-full): TLS is decided here instead.
const SSL_URI_PARAMETERS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat'];

function findDatabase(services: Service[]): VcapServices['database'] {
  const isPostgres = (s: Service) =>
    (s.tags ?? []).some((t) => /^postgres(ql)?$/i.test(t)) || /postgres/i.test(s.label ?? '');
  const service = services.find((s) => s.name === DATABASE_SERVICE_NAME) ?? services.find(isPostgres);
  if (!service) return undefined;
  const serviceName = service.name ?? service.label ?? 'postgres';
  const c = service.credentials ?? {};
  const rawUri = str(c.uri) ?? str(c.url) ?? str(c.database_uri) ?? fromParts(c);
  if (rawUri === undefined) {
    throw new VcapError(`service "${serviceName}" has neither credentials.uri nor hostname and database name`);
  }
  let url: URL;
  try {
    url = new URL(rawUri);
  } catch {
    throw new VcapError(`service "${serviceName}" credentials.uri is not a URL`);
  }
  if (!/^postgres(ql)?:$/.test(url.protocol)) {
    throw new VcapError(`service "${serviceName}" credentials.uri must be a postgres:// connection string`);
  }

  const ca = str(c.sslrootcert) ?? str(c.ca_certificate) ?? str(c.sslcert_ca);
  if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new VcapError(`service "${serviceName}": the CA certificate must be PEM text, not a file name`);
  }
  const sslmode = str(c.sslmode) ?? url.searchParams.get('sslmode') ?? undefined;
  let ssl: DatabaseSsl;
  if (sslmode === 'disable') ssl = false;
  else if (ca !== undefined) ssl = { rejectUnauthorized: true, ca };
  // libpq: require (and prefer) encrypt without checking the certificate; verify-* check it.
  else if (sslmode !== undefined) ssl = { rejectUnauthorized: sslmode === 'verify-full' || sslmode === 'verify-ca' };
  else ssl = false;

  for (const name of SSL_URI_PARAMETERS) url.searchParams.delete(name);
  const uri = url.toString().replace(/^postgresql:\/\//, 'postgres://');
  return { uri, ssl, serviceName };
}

function fromParts(c: Record<string, unknown>): string | undefined {
  const host = str(c.hostname) ?? str(c.host);
  const database = str(c.name) ?? str(c.dbname) ?? str(c.database);
  if (host === undefined || database === undefined) return undefined;
  const user = encodeURIComponent(str(c.username) ?? str(c.user) ?? '');
  const password = encodeURIComponent(str(c.password) ?? '');
  const port = str(c.port) ?? '5432';
  return `postgres://${user}:${password}@${host}:${port}/${encodeURIComponent(database)}`;
}

function devicePublicKeyOf(service: Service): string | undefined {
  const pem = str(service.credentials?.devicePublicKey);
  if (pem === undefined) return undefined;
  try {
    crypto.createPublicKey(pem);
  } catch {
    throw new VcapError(`service "${CREDENTIALS_SERVICE_NAME}" credentials.devicePublicKey is not a PEM public key`);
  }
  return pem;
}

function str(value: unknown): string | undefined {
  if (typeof value === 'number') return String(value);
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}
