/** Starts the real app (`buildApp`) on a free port against a test database. */
import fs from 'node:fs';
import type { DestinationStream } from 'pino';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { makeLogger } from '../../src/logger.js';
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';
import { testKeyPaths } from './keys.js';
import { assertMatchesDocument } from './openapi-check.js';

export const TEST_CREDENTIALS = { username: 'tester', password: 'test-password-123' };

/**
 * Every answer a test gets with plain `fetch` from a local server is checked against the
 * OpenAPI document too (paths the document does not describe, such as the DSS
 * simulator's, are not checked): with `api()` below, every REST answer the tests receive.
 */
const plainFetch = globalThis.fetch;
if (!(plainFetch as { checked?: boolean }).checked) {
  const checkedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await plainFetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.hostname === '127.0.0.1' || url.hostname === 'localhost') {
      await assertMatchesDocument(init?.method ?? (input instanceof Request ? input.method : 'GET'), url.pathname + url.search, res);
    }
    return res;
  };
  globalThis.fetch = Object.assign(checkedFetch, { checked: true }) as typeof fetch;
}

export interface TestServer {
  app: App;
  config: Config;
  port: number;
  wsUrl: string;
  httpUrl: string;
  /** fetch against the REST API with the test credentials. */
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Where the server's log lines go (pino's stdout otherwise); LOG_LEVEL still applies. */
  logDestination?: DestinationStream;
}

export async function startTestServer(db: TestDatabase, env: Record<string, string> = {}, options: TestServerOptions = {}): Promise<TestServer> {
  const { publicKeyPath } = testKeyPaths();
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    DEVICE_PUBLIC_KEY_PATH: publicKeyPath,
    API_USERNAME: TEST_CREDENTIALS.username,
    API_PASSWORD: TEST_CREDENTIALS.password,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    INSTANCE_ID: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    ...env,
  });
  const logger = makeLogger({ level: config.logLevel, instanceId: config.instanceId }, options.logDestination);
  const app = buildApp({
    config,
    logger,
    pool: db.pool,
    databaseUrl: db.url,
    devicePublicKey: fs.readFileSync(publicKeyPath, 'utf8'),
    credentials: config.apiCredentials!,
  });
  // A free port unless the test asks for one (to restart a server where its clients expect it).
  const port = await app.listen(env.PORT === undefined ? 0 : config.port, '127.0.0.1');
  const httpUrl = `http://127.0.0.1:${port}`;
  const authorization = 'Basic ' + Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64');
  return {
    app,
    config,
    port,
    wsUrl: `ws://127.0.0.1:${port}/`,
    httpUrl,
    api(path, init = {}) {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (!headers.has('authorization')) headers.set('authorization', authorization);
      if (json !== undefined) headers.set('content-type', 'application/json');
      // Checked against the OpenAPI document by the fetch above.
      return fetch(httpUrl + path, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) });
    },
    close: () => app.close(),
  };
}

/**
 * A fresh test database and a server on it for the enclosing file or describe block:
 * created in beforeAll, closed and dropped in afterAll. Read `.db` and `.server` inside tests.
 */
export function useTestServer(env: Record<string, string> = {}): { readonly db: TestDatabase; readonly server: TestServer } {
  const context = {} as { db: TestDatabase; server: TestServer };
  beforeAll(async () => {
    context.db = await createTestDatabase();
    context.server = await startTestServer(context.db, env);
  });
  afterAll(async () => {
    await context.server?.close();
    await context.db?.drop();
  });
  return context;
}
