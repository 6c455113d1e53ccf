/**
 * Reads the services Cloud Foundry binds to the app from `VCAP_SERVICES`:
 * - PostgreSQL: the instance named `mypostgres`, else the first with a `postgres`/`postgresql` tag or label.
 * - REST API credentials: the user-provided service `websocket-ups` (`{"username","password"}`).
 */
import { z } from 'zod';

export const DATABASE_SERVICE_NAME = 'mypostgres';
export const CREDENTIALS_SERVICE_NAME = 'websocket-ups';

const serviceSchema = z.object({
  name: z.string().optional(),
  label: z.string().optional(),
  tags: z.array(z.string()).optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
});
const vcapSchema = z.record(z.string(), z.array(serviceSchema));
type Service = z.infer<typeof serviceSchema>;

export interface VcapServices {
  database?: { uri: string; ssl: false | { rejectUnauthorized: boolean; ca?: string } };
  apiCredentials?: { username?: string; password?: string };
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

  return {
    database: findDatabase(services),
    apiCredentials: findApiCredentials(services),
  };
}

export class VcapError extends Error {
  override name = 'ConfigError';
  readonly variable = 'VCAP_SERVICES';
  constructor(message: string) {
    super(`VCAP_SERVICES: ${message}`);
  }
}

function findDatabase(services: Service[]): VcapServices['database'] {
  const isPostgres = (s: Service) =>
    (s.tags ?? []).some((t) => /^postgres(ql)?$/i.test(t)) || /postgres/i.test(s.label ?? '');
  const service = services.find((s) => s.name === DATABASE_SERVICE_NAME) ?? services.find(isPostgres);
  if (!service) return undefined;
  const c = service.credentials ?? {};
  const uri = str(c.uri) ?? str(c.url) ?? str(c.database_uri) ?? fromParts(c);
  if (uri === undefined) {
    throw new VcapError(`service "${service.name ?? service.label}" has no credentials.uri`);
  }
  const ca = str(c.sslrootcert) ?? str(c.ca_certificate) ?? str(c.sslcert_ca);
  const sslmode = str(c.sslmode) ?? new URL(uri).searchParams.get('sslmode') ?? undefined;
  const ssl =
    ca !== undefined
      ? { rejectUnauthorized: true, ca }
      : sslmode !== undefined && sslmode !== 'disable'
        ? { rejectUnauthorized: sslmode === 'verify-full' || sslmode === 'verify-ca' }
        : false;
  return { uri: uri.replace(/^postgresql:\/\//, 'postgres://'), ssl };
}

function fromParts(c: Record<string, unknown>): string | undefined {
  const host = str(c.hostname) ?? str(c.host);
  const database = str(c.name) ?? str(c.dbname) ?? str(c.database);
  if (host === undefined || database === undefined) return undefined;
  const user = encodeURIComponent(str(c.username) ?? str(c.user) ?? '');
  const password = encodeURIComponent(str(c.password) ?? '');
  const port = c.port === undefined ? '5432' : String(c.port);
  return `postgres://${user}:${password}@${host}:${port}/${database}`;
}

function findApiCredentials(services: Service[]): VcapServices['apiCredentials'] {
  const service = services.find((s) => s.name === CREDENTIALS_SERVICE_NAME);
  if (!service) return undefined;
  const c = service.credentials ?? {};
  return { username: str(c.username), password: str(c.password) };
}

function str(value: unknown): string | undefined {
  if (typeof value === 'number') return String(value);
  return typeof value === 'string' && value !== '' ? value : undefined;
}
