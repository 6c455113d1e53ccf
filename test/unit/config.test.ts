/**
 * Configuration from the environment as Cloud Foundry gives it: VCAP_SERVICES documents shaped like
 * real brokers write them, PORT and the CF_INSTANCE_* variables, and the variables that override them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Environment } from '../../src/config/config.js';
import { loadOrCreateDevicePublicKey } from '../../src/config/dev-keys.js';
import { CREDENTIALS_SERVICE_NAME, DATABASE_SERVICE_NAME, parseVcapServices } from '../../src/config/vcap.js';
import { makeLogger } from '../../src/logger.js';

const silent = makeLogger({ level: 'silent' });
const { publicKey: PUBLIC_KEY_PEM } = crypto.generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUbroker-ca\n-----END CERTIFICATE-----\n';
const GUID = '5b0c5f2a-6f5e-4a8e-9d43-1c2a3e4f5a6b';

/** A PostgreSQL instance as the classic (postgresql-db) broker binds it: by name, with a uri. */
const postgresByName = {
  label: 'postgresql-db',
  provider: null,
  plan: 'small',
  name: 'mypostgres',
  tags: ['postgresql', 'relational'],
  instance_guid: 'c7e1a0b4-0000-4000-8000-000000000001',
  instance_name: 'mypostgres',
  binding_guid: 'c7e1a0b4-0000-4000-8000-000000000002',
  binding_name: null,
  credentials: {
    hostname: '10.0.16.12',
    port: 5432,
    name: 'cf_0c3bd1',
    username: 'u_4f1a',
    password: 'pw_9c2e',
    uri: 'postgres://u_4f1a:pw_9c2e@10.0.16.12:5432/cf_0c3bd1',
    jdbcUrl: 'jdbc:postgresql://10.0.16.12:5432/cf_0c3bd1?user=u_4f1a&password=pw_9c2e',
  },
  syslog_drain_url: null,
  volume_mounts: [],
};

const ups = (credentials: Record<string, unknown>) => ({
  label: 'user-provided',
  name: 'websocket-ups',
  tags: [],
  instance_guid: 'd1e2f3a4-0000-4000-8000-000000000003',
  instance_name: 'websocket-ups',
  binding_guid: 'd1e2f3a4-0000-4000-8000-000000000004',
  binding_name: null,
  credentials,
  syslog_drain_url: '',
  volume_mounts: [],
});

const vcap = (services: Record<string, unknown[]>) => JSON.stringify(services);

function configError(env: Environment): ConfigError {
  try {
    loadConfig(env, '/srv/app');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

/** What node-postgres will really use for TLS with this configuration (it parses the URI last). */
function pgSsl(config: { databaseUrl: string | undefined; databaseSsl: unknown }) {
  const client = new pg.Client({ connectionString: config.databaseUrl, ssl: (config.databaseSsl || undefined) as pg.ClientConfig['ssl'] });
  return (client as unknown as { connectionParameters: { ssl: unknown } }).connectionParameters.ssl;
}

describe('PostgreSQL from VCAP_SERVICES', () => {
  it('takes the service named mypostgres, even when another postgres service comes first', () => {
    const other = { ...postgresByName, name: 'reporting-db', credentials: { ...postgresByName.credentials, uri: 'postgres://x:y@10.0.0.9:5432/reports' } };
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'postgresql-db': [other, postgresByName] }) }, '/srv/app');
    expect(DATABASE_SERVICE_NAME).toBe('mypostgres');
    expect(config.databaseUrl).toBe('postgres://u_4f1a:pw_9c2e@10.0.16.12:5432/cf_0c3bd1');
    expect(config.databaseSsl).toBe(false);
  });

  it('finds a differently named instance by its postgres tag, past services of other kinds', () => {
    const redis = { label: 'p.redis', name: 'cache', tags: ['redis', 'pivotal'], credentials: { host: '10.0.0.5', password: 'r', port: 6379 } };
    const db = { ...postgresByName, label: 'a9s-postgresql11', name: 'orders-db', tags: ['sql', 'postgres'] };
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'p.redis': [redis], 'a9s-postgresql11': [db] }) }, '/srv/app');
    expect(config.databaseUrl).toBe('postgres://u_4f1a:pw_9c2e@10.0.16.12:5432/cf_0c3bd1');
  });

  it('finds one by its label when it has no tags', () => {
    const db = { label: 'elephant-postgres', name: 'main', credentials: { uri: 'postgresql://a:b@db.example.net:6543/main' } };
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'elephant-postgres': [db] }) }, '/srv/app');
    expect(config.databaseUrl).toBe('postgres://a:b@db.example.net:6543/main');
  });

  it('applies sslmode and the CA the service gives, and node-postgres really uses them', () => {
    // Cloud Service Broker for AWS: postgresql:// with sslmode in the URI, the RDS CA as PEM in sslrootcert.
    const csb = {
      ...postgresByName,
      label: 'csb-aws-postgresql',
      credentials: {
        hostname: 'csb-pg-1.abc.eu-west-1.rds.amazonaws.com',
        port: 5432,
        name: 'vsbdb',
        username: 'csb_user',
        password: 's3cr3t',
        uri: 'postgresql://csb_user:s3cr3t@csb-pg-1.abc.eu-west-1.rds.amazonaws.com:5432/vsbdb?sslmode=verify-full',
        sslrootcert: CA_PEM,
        require_ssl: true,
      },
    };
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'csb-aws-postgresql': [csb] }) }, '/srv/app');
    expect(config.databaseUrl).toBe('postgres://csb_user:s3cr3t@csb-pg-1.abc.eu-west-1.rds.amazonaws.com:5432/vsbdb');
    expect(config.databaseSsl).toEqual({ rejectUnauthorized: true, ca: CA_PEM });
    expect(pgSsl(config)).toEqual({ rejectUnauthorized: true, ca: CA_PEM });
  });

  it('encrypts without verifying for sslmode=require in the URI (libpq meaning), which node-postgres would otherwise turn into verify-full', () => {
    const db = { ...postgresByName, credentials: { uri: 'postgres://u:p@10.0.16.12:5432/db?sslmode=require&application_name=x' } };
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'postgresql-db': [db] }) }, '/srv/app');
    expect(config.databaseUrl).toBe('postgres://u:p@10.0.16.12:5432/db?application_name=x');
    expect(config.databaseSsl).toEqual({ rejectUnauthorized: false });
    expect(pgSsl(config)).toEqual({ rejectUnauthorized: false });
  });

  it('reads sslmode from the credentials, and disable wins over a CA', () => {
    const verify = { ...postgresByName, credentials: { ...postgresByName.credentials, sslmode: 'verify-ca' } };
    expect(loadConfig({ VCAP_SERVICES: vcap({ p: [verify] }) }, '/srv/app').databaseSsl).toEqual({ rejectUnauthorized: true });
    const off = { ...postgresByName, credentials: { ...postgresByName.credentials, sslmode: 'disable', sslrootcert: CA_PEM } };
    expect(loadConfig({ VCAP_SERVICES: vcap({ p: [off] }) }, '/srv/app').databaseSsl).toBe(false);
  });

  it('builds the URI from its parts when the service gives no uri, encoding what needs it', () => {
    const parts = { label: 'postgres', name: 'mypostgres', credentials: { host: 'pg.internal', port: 5433, dbname: 'iot', user: 'svc', password: 'p@ss:w/rd#1' } };
    const config = loadConfig({ VCAP_SERVICES: vcap({ postgres: [parts] }) }, '/srv/app');
    const url = new URL(config.databaseUrl!);
    expect([url.protocol, url.hostname, url.port, url.pathname, url.username]).toEqual(['postgres:', 'pg.internal', '5433', '/iot', 'svc']);
    expect(decodeURIComponent(url.password)).toBe('p@ss:w/rd#1');
    expect(new pg.Client({ connectionString: config.databaseUrl }).password).toBe('p@ss:w/rd#1');
  });

  it('defaults the port when the parts have none', () => {
    const parts = { label: 'postgres', name: 'mypostgres', credentials: { hostname: 'pg', name: 'iot', username: 'a', password: 'b' } };
    expect(loadConfig({ VCAP_SERVICES: vcap({ postgres: [parts] }) }, '/srv/app').databaseUrl).toBe('postgres://a:b@pg:5432/iot');
  });

  it('fails naming VCAP_SERVICES and the service when it cannot make a connection string', () => {
    const empty = { ...postgresByName, credentials: { username: 'u' } };
    expect(configError({ VCAP_SERVICES: vcap({ p: [empty] }) }).message).toMatch(/^VCAP_SERVICES: service "mypostgres" has neither credentials.uri/);
    const mysql = { ...postgresByName, credentials: { uri: 'mysql://u:p@h/db' } };
    expect(configError({ VCAP_SERVICES: vcap({ p: [mysql] }) }).message).toMatch(/^VCAP_SERVICES: .*postgres:\/\//);
    const garbage = { ...postgresByName, credentials: { uri: 'not a url' } };
    expect(configError({ VCAP_SERVICES: vcap({ p: [garbage] }) }).message).toMatch(/^VCAP_SERVICES: .*not a URL/);
    const caPath = { ...postgresByName, credentials: { ...postgresByName.credentials, sslrootcert: '/etc/ssl/rds-ca.pem' } };
    expect(configError({ VCAP_SERVICES: vcap({ p: [caPath] }) }).message).toMatch(/^VCAP_SERVICES: .*PEM/);
  });
});

describe('VCAP_SERVICES without the services, or broken', () => {
  it('means: no database and no credentials from Cloud Foundry (embedded database and generated credentials outside production)', () => {
    for (const raw of [undefined, '', '{}', vcap({ 'p.redis': [{ name: 'cache', label: 'p.redis', tags: ['redis'], credentials: {} }] })]) {
      const config = loadConfig({ VCAP_SERVICES: raw }, '/srv/app');
      expect(config.databaseUrl).toBeUndefined();
      expect(config.apiCredentials).toBeUndefined();
      expect(config.devicePublicKeyPem).toBeUndefined();
    }
    expect(parseVcapServices('{}')).toEqual({ database: undefined, apiCredentials: undefined, devicePublicKey: undefined });
  });

  it('is a start-up error naming VCAP_SERVICES when it is not JSON', () => {
    const err = configError({ VCAP_SERVICES: '{"postgresql-db": [{"name": "mypostgres",' });
    expect(err.variable).toBe('VCAP_SERVICES');
    expect(err.message).toMatch(/^VCAP_SERVICES: is not valid JSON/);
  });

  it('is a start-up error naming VCAP_SERVICES when it is JSON of the wrong shape', () => {
    for (const raw of ['[]', '"mypostgres"', '{"postgresql-db": {"name": "mypostgres"}}', '{"p": [{"name": 7}]}']) {
      const err = configError({ VCAP_SERVICES: raw });
      expect(err.variable).toBe('VCAP_SERVICES');
      expect(err.message).toMatch(/service arrays/);
    }
  });
});

describe('the websocket-ups user-provided service', () => {
  it('gives the REST API credentials', () => {
    expect(CREDENTIALS_SERVICE_NAME).toBe('websocket-ups');
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'user-provided': [ups({ username: 'operator', password: 'a-long-password-1' })] }) }, '/srv/app');
    expect(config.apiCredentials).toEqual({ username: 'operator', password: 'a-long-password-1' });
  });

  it('may give the device-token public key in PEM, which then replaces keys/public.pem', () => {
    const config = loadConfig({ VCAP_SERVICES: vcap({ 'user-provided': [ups({ username: 'o', password: 'p', devicePublicKey: PUBLIC_KEY_PEM })] }) }, '/srv/app');
    expect(config.devicePublicKeyPem).toBe(PUBLIC_KEY_PEM);
    // The file is never read: the path does not exist, and this is production.
    const key = loadOrCreateDevicePublicKey({ ...config, devicePublicKeyPath: '/nonexistent/public.pem', isProduction: true }, silent);
    expect(key).toBe(PUBLIC_KEY_PEM);
  });

  it('refuses a devicePublicKey that is not a PEM public key', () => {
    const err = configError({ VCAP_SERVICES: vcap({ 'user-provided': [ups({ username: 'o', password: 'p', devicePublicKey: 'keys/public.pem' })] }) });
    expect(err.message).toMatch(/^VCAP_SERVICES: service "websocket-ups" credentials.devicePublicKey is not a PEM public key/);
  });

  it('says which credential the service lacks', () => {
    const err = configError({ VCAP_SERVICES: vcap({ 'user-provided': [ups({ username: 'operator' })] }) });
    expect(err.message).toBe('VCAP_SERVICES: service "websocket-ups" has no credentials.password');
  });
});

describe('the environment overrides Cloud Foundry', () => {
  const services = vcap({
    'csb-aws-postgresql': [{ ...postgresByName, credentials: { uri: 'postgres://u:p@rds:5432/db?sslmode=verify-full', sslrootcert: CA_PEM } }],
    'user-provided': [ups({ username: 'operator', password: 'a-long-password-1', devicePublicKey: PUBLIC_KEY_PEM })],
  });

  it('DATABASE_URL wins, and the service TLS options do not follow it', () => {
    const config = loadConfig({ VCAP_SERVICES: services, DATABASE_URL: 'postgres://me:x@localhost:5432/dev' }, '/srv/app');
    expect(config.databaseUrl).toBe('postgres://me:x@localhost:5432/dev');
    expect(config.databaseSsl).toBe(false);
  });

  it('DATABASE_SSL and DATABASE_SSL_REJECT_UNAUTHORIZED adjust TLS, keeping the service CA', () => {
    expect(loadConfig({ VCAP_SERVICES: services, DATABASE_SSL: 'false' }, '/srv/app').databaseSsl).toBe(false);
    expect(loadConfig({ VCAP_SERVICES: services, DATABASE_SSL_REJECT_UNAUTHORIZED: 'false' }, '/srv/app').databaseSsl).toEqual({ rejectUnauthorized: false, ca: CA_PEM });
    expect(loadConfig({ DATABASE_URL: 'postgres://h/db', DATABASE_SSL: 'true' }, '/srv/app').databaseSsl).toEqual({ rejectUnauthorized: true });
  });

  it('API_USERNAME and API_PASSWORD win as a pair and are never mixed with the service credentials', () => {
    const config = loadConfig({ VCAP_SERVICES: services, API_USERNAME: 'ci', API_PASSWORD: 'another-long-one' }, '/srv/app');
    expect(config.apiCredentials).toEqual({ username: 'ci', password: 'another-long-one' });
    const err = configError({ VCAP_SERVICES: services, API_USERNAME: 'ci' });
    expect(err.variable).toBe('API_PASSWORD');
  });

  it('DEVICE_PUBLIC_KEY_PATH wins over the service key', () => {
    const config = loadConfig({ VCAP_SERVICES: services, DEVICE_PUBLIC_KEY_PATH: 'secrets/device.pem' }, '/srv/app');
    expect(config.devicePublicKeyPath).toBe('/srv/app/secrets/device.pem');
    expect(config.devicePublicKeyPem).toBeUndefined();
  });
});

describe('PORT and the instance id', () => {
  it('listens on the PORT Cloud Foundry gives, else 5000', () => {
    expect(loadConfig({ PORT: '8080' }, '/srv/app').port).toBe(8080);
    expect(loadConfig({}, '/srv/app').port).toBe(5000);
  });

  it('names the instance <CF_INSTANCE_INDEX>-<CF_INSTANCE_GUID> on Cloud Foundry', () => {
    expect(loadConfig({ CF_INSTANCE_GUID: GUID, CF_INSTANCE_INDEX: '1' }, '/srv/app').instanceId).toBe(`1-${GUID}`);
    expect(loadConfig({ CF_INSTANCE_GUID: GUID }, '/srv/app').instanceId).toBe(GUID);
  });

  it('does not use the index alone: a replacement reuses it while the old container still runs', () => {
    expect(loadConfig({ CF_INSTANCE_INDEX: '0' }, '/srv/app').instanceId).toBe(`${os.hostname()}-${process.pid}`);
  });

  it('lets INSTANCE_ID win', () => {
    expect(loadConfig({ INSTANCE_ID: 'blue-7', CF_INSTANCE_GUID: GUID, CF_INSTANCE_INDEX: '3' }, '/srv/app').instanceId).toBe('blue-7');
  });

  it('refuses a CF_INSTANCE_INDEX that is not a number', () => {
    expect(configError({ CF_INSTANCE_GUID: GUID, CF_INSTANCE_INDEX: 'one' }).variable).toBe('CF_INSTANCE_INDEX');
  });
});

describe('production', () => {
  const complete = {
    NODE_ENV: 'production',
    PORT: '8080',
    CF_INSTANCE_GUID: GUID,
    CF_INSTANCE_INDEX: '0',
    VCAP_APPLICATION: JSON.stringify({ application_name: 'dev-websocket', space_name: 'dev', instance_index: 0 }),
    VCAP_SERVICES: vcap({
      'postgresql-db': [postgresByName],
      'user-provided': [ups({ username: 'operator', password: 'a-long-password-1' })],
    }),
  };

  it('starts from what a Cloud Foundry container gives it', () => {
    const config = loadConfig(complete, '/home/vcap/app');
    expect(config).toMatchObject({
      isProduction: true,
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: 'postgres://u_4f1a:pw_9c2e@10.0.16.12:5432/cf_0c3bd1',
      apiCredentials: { username: 'operator', password: 'a-long-password-1' },
      instanceId: `0-${GUID}`,
      devicePublicKeyPath: '/home/vcap/app/keys/public.pem',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('requires a database', () => {
    const err = configError({ ...complete, VCAP_SERVICES: vcap({ 'user-provided': [ups({ username: 'operator', password: 'a-long-password-1' })] }) });
    expect(err.variable).toBe('DATABASE_URL');
    expect(err.message).toMatch(/VCAP_SERVICES/);
  });

  it('requires REST API credentials, and says the service is the other way to give them', () => {
    const err = configError({ ...complete, VCAP_SERVICES: vcap({ 'postgresql-db': [postgresByName] }) });
    expect(err.variable).toBe('API_USERNAME');
    expect(err.message).toMatch(/websocket-ups/);
  });

  it('requires a password of at least 12 characters, naming where it came from', () => {
    expect(configError({ ...complete, API_USERNAME: 'a', API_PASSWORD: 'short' }).variable).toBe('API_PASSWORD');
    const err = configError({ ...complete, VCAP_SERVICES: vcap({ 'postgresql-db': [postgresByName], 'user-provided': [ups({ username: 'a', password: 'short' })] }) });
    expect(err.variable).toBe('VCAP_SERVICES');
    expect(err.message).toMatch(/websocket-ups.*12 characters/);
  });

  describe('the device-token public key', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-config-'));
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('is a start-up error naming DEVICE_PUBLIC_KEY_PATH when the file is missing', () => {
      const config = loadConfig({ ...complete, DEVICE_PUBLIC_KEY_PATH: path.join(dir, 'missing.pem') }, dir);
      let thrown: unknown;
      try {
        loadOrCreateDevicePublicKey(config, silent);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable).toBe('DEVICE_PUBLIC_KEY_PATH');
      expect((thrown as Error).message).toContain(path.join(dir, 'missing.pem'));
      expect(fs.existsSync(path.join(dir, 'missing.pem'))).toBe(false);
    });

    it('is generated (with its private key) outside production', () => {
      const config = loadConfig({ DEVICE_PUBLIC_KEY_PATH: path.join(dir, 'dev', 'public.pem') }, dir);
      const pem = loadOrCreateDevicePublicKey(config, silent);
      expect(crypto.createPublicKey(pem).asymmetricKeyType).toBe('rsa');
      expect(fs.existsSync(path.join(dir, 'dev', 'private.pem'))).toBe(true);
    });
  });
});

describe('bad values fail at start-up naming the variable', () => {
  it.each([
    ['PORT', 'http'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['DATABASE_URL', 'mysql://u:p@h/db'],
    ['DATABASE_SSL', 'maybe'],
    ['DATABASE_POOL_SIZE', '0'],
    ['LOG_LEVEL', 'verbose'],
    ['AUTH_TIMEOUT_MS', '10s'],
    ['MAX_MESSAGE_BYTES', '1'],
    ['HEARTBEAT_INTERVAL_MS', '1.5'],
  ])('%s=%s', (variable, value) => {
    const err = configError({ [variable]: value });
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}: `)).toBe(true);
  });

  it.each(['HS256', 'none', 'RS256,HS512', 'rs256', ','])('DEVICE_TOKEN_ALGORITHMS=%s is refused', (value) => {
    expect(configError({ DEVICE_TOKEN_ALGORITHMS: value }).variable).toBe('DEVICE_TOKEN_ALGORITHMS');
  });

  it('DEVICE_TOKEN_ALGORITHMS accepts asymmetric algorithms and defaults to RS256', () => {
    expect(loadConfig({ DEVICE_TOKEN_ALGORITHMS: 'RS256, ES256' }, '/srv/app').deviceTokenAlgorithms).toEqual(['RS256', 'ES256']);
    expect(loadConfig({}, '/srv/app').deviceTokenAlgorithms).toEqual(['RS256']);
  });
});

describe('API_KEY_RATE_LIMIT', () => {
  it('is <per second>[/<burst>], burst twice the rate when omitted, 100/200 by default, 0 for none', () => {
    expect(loadConfig({}, '/srv/app').apiKeyRateLimit).toEqual({ perSecond: 100, burst: 200 });
    expect(loadConfig({ API_KEY_RATE_LIMIT: '10' }, '/srv/app').apiKeyRateLimit).toEqual({ perSecond: 10, burst: 20 });
    expect(loadConfig({ API_KEY_RATE_LIMIT: '10/15' }, '/srv/app').apiKeyRateLimit).toEqual({ perSecond: 10, burst: 15 });
    expect(loadConfig({ API_KEY_RATE_LIMIT: '0' }, '/srv/app').apiKeyRateLimit).toBeUndefined();
  });

  it.each(['fast', '10/', '/10', '-1', '1.5', '0/10', '10/0', '100001', '10/200001'])('refuses %s naming the variable', (value) => {
    expect(configError({ API_KEY_RATE_LIMIT: value }).variable).toBe('API_KEY_RATE_LIMIT');
  });
});
