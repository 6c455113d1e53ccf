/**
 * The one place that reads the environment. Everything else receives a frozen
 * `Config` as an argument.
 *
 * Precedence: explicit environment variable > Cloud Foundry (`VCAP_SERVICES`,
 * `CF_INSTANCE_*`) > default. Bad values fail at start-up with a `ConfigError`
 * that names the variable.
 */
import os from 'node:os';
import path from 'node:path';
import { parseVcapServices } from './vcap.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

/** JWT algorithms a device token may be signed with. Symmetric (HS*) and `none` are never allowed: the key is public. */
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
export type DeviceTokenAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly nodeEnv: string;
  readonly isProduction: boolean;
  /** HTTP and WebSocket port. (Default: 5000; `PORT`, which Cloud Foundry sets.) */
  readonly port: number;
  readonly host: string;
  /** Where the embedded database, generated API credentials and similar state live. (Default: ./data) */
  readonly dataDir: string;
  /** PostgreSQL connection string; `undefined` means: start the embedded PostgreSQL under `dataDir/postgres`. */
  readonly databaseUrl: string | undefined;
  /** TLS for the database connection, as the bound Cloud Foundry service asks for it. */
  readonly databaseSsl: false | { rejectUnauthorized: boolean; ca?: string };
  readonly databasePoolSize: number;
  readonly devicePublicKeyPath: string;
  readonly deviceTokenAlgorithms: readonly DeviceTokenAlgorithm[];
  /** REST API credentials; `undefined` outside production means: generate and keep them in `dataDir`. */
  readonly apiCredentials: { readonly username: string; readonly password: string } | undefined;
  readonly instanceId: string;
  readonly logLevel: LogLevel;
  /** A socket that has not authenticated within this time is closed. (Default: 10 000) */
  readonly authTimeoutMs: number;
  /** Largest WebSocket message or REST body accepted. (Default: 65 536) */
  readonly maxMessageBytes: number;
  /** WebSocket ping interval; a peer that misses one pong is terminated. (Default: 30 000) */
  readonly heartbeatIntervalMs: number;
  /** How long graceful shutdown may take before the process exits anyway. (Default: 10 000) */
  readonly shutdownTimeoutMs: number;
  /** How often this instance records that it is alive; three missed beats make it dead to the others. (Default: 5 000) */
  readonly instanceHeartbeatMs: number;
}

export type Environment = Readonly<Record<string, string | undefined>>;

export function loadConfig(env: Environment = process.env, cwd: string = process.cwd()): Config {
  const nodeEnv = env.NODE_ENV ?? 'development';
  const isProduction = nodeEnv === 'production';
  const vcap = parseVcapServices(env.VCAP_SERVICES);

  const dataDir = path.resolve(cwd, nonEmpty(env, 'DATA_DIR') ?? 'data');
  const databaseUrl = nonEmpty(env, 'DATABASE_URL') ?? vcap.database?.uri;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(env.DATABASE_URL ? 'DATABASE_URL' : 'VCAP_SERVICES', 'must be a postgres:// connection string');
  }
  if (databaseUrl === undefined && isProduction) {
    throw new ConfigError('DATABASE_URL', 'is required in production (or bind a PostgreSQL service through VCAP_SERVICES)');
  }

  const username = nonEmpty(env, 'API_USERNAME') ?? vcap.apiCredentials?.username;
  const password = nonEmpty(env, 'API_PASSWORD') ?? vcap.apiCredentials?.password;
  if ((username === undefined) !== (password === undefined)) {
    throw new ConfigError(username === undefined ? 'API_USERNAME' : 'API_PASSWORD', 'API_USERNAME and API_PASSWORD must be set together');
  }
  if (username === undefined && isProduction) {
    throw new ConfigError('API_USERNAME', 'API_USERNAME and API_PASSWORD are required in production (or the websocket-ups service)');
  }
  if (password !== undefined && isProduction && password.length < 12) {
    throw new ConfigError('API_PASSWORD', 'must be at least 12 characters in production');
  }

  const algorithms = list(env, 'DEVICE_TOKEN_ALGORITHMS') ?? ['RS256'];
  for (const alg of algorithms) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError('DEVICE_TOKEN_ALGORITHMS', `"${alg}" is not allowed; use one of ${ASYMMETRIC_ALGORITHMS.join(', ')}`);
    }
  }

  const logLevel = nonEmpty(env, 'LOG_LEVEL') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const config: Config = {
    nodeEnv,
    isProduction,
    port: integer(env, 'PORT', 5000, 0, 65535),
    host: nonEmpty(env, 'HOST') ?? '0.0.0.0',
    dataDir,
    databaseUrl,
    databaseSsl: databaseSsl(env, vcap.database?.ssl),
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 200),
    devicePublicKeyPath: path.resolve(cwd, nonEmpty(env, 'DEVICE_PUBLIC_KEY_PATH') ?? 'keys/public.pem'),
    deviceTokenAlgorithms: algorithms as DeviceTokenAlgorithm[],
    apiCredentials: username !== undefined && password !== undefined ? { username, password } : undefined,
    instanceId: nonEmpty(env, 'INSTANCE_ID') ?? nonEmpty(env, 'CF_INSTANCE_GUID') ?? `${os.hostname()}-${process.pid}`,
    logLevel: logLevel as LogLevel,
    authTimeoutMs: integer(env, 'AUTH_TIMEOUT_MS', 10_000, 100, 600_000),
    maxMessageBytes: integer(env, 'MAX_MESSAGE_BYTES', 64 * 1024, 256, 16 * 1024 * 1024),
    heartbeatIntervalMs: integer(env, 'HEARTBEAT_INTERVAL_MS', 30_000, 100, 3_600_000),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    instanceHeartbeatMs: integer(env, 'INSTANCE_HEARTBEAT_MS', 5_000, 100, 600_000),
  };
  return Object.freeze(config);
}

function nonEmpty(env: Environment, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function list(env: Environment, name: string): string[] | undefined {
  const value = nonEmpty(env, name);
  return value?.split(',').map((s) => s.trim()).filter(Boolean);
}

function integer(env: Environment, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function boolean(env: Environment, name: string): boolean | undefined {
  const raw = nonEmpty(env, name)?.toLowerCase();
  if (raw === undefined) return undefined;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function databaseSsl(env: Environment, fromVcap: Config['databaseSsl'] | undefined): Config['databaseSsl'] {
  const enabled = boolean(env, 'DATABASE_SSL');
  if (enabled === false) return false;
  if (enabled === true) {
    return { rejectUnauthorized: boolean(env, 'DATABASE_SSL_REJECT_UNAUTHORIZED') ?? true };
  }
  return fromVcap ?? false;
}

export const configInternals = { integer, boolean, list };
