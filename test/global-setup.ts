/**
 * Once per test run: a real PostgreSQL (DATABASE_URL if set, else an embedded one
 * in a temporary directory), a template database migrated through the real
 * migrator, and a device-token key pair. Each test file clones the template.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { migrate } from '../src/db/migrate.js';
import { makePool } from '../src/db/pool.js';
import { makeLogger } from '../src/logger.js';
import { StartupError } from '../src/startup-error.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    templateDatabase: string;
    keyDir: string;
  }
}

/**
 * vitest reports a failing global set-up with little more than an exit code (an error
 * without a message, e.g. a rejected promise without a reason, prints nothing at all),
 * so the cause and what to do go to stderr here, in words.
 */
export default async function setup(project: TestProject) {
  try {
    return await prepare(project);
  } catch (err) {
    const hint = err instanceof StartupError ? `\n  what to do: ${err.hint}` : '';
    process.stderr.write(`\ntest set-up failed: ${err instanceof Error ? err.message : String(err)}${hint}\n\n`);
    throw err instanceof Error ? err : new Error(`test set-up failed: ${String(err)}`);
  }
}

async function prepare(project: TestProject) {
  const logger = makeLogger({ level: 'warn' });
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-test-'));
  await fs.chmod(tmp, 0o755);
  let embedded: EmbeddedPostgres | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'postgres'), persistent: false, logger });
    adminUrl = embedded.url;
  }

  const templateDatabase = `iotws_template_${process.pid}`;
  const admin = new pg.Client(adminUrl);
  try {
    await admin.connect();
  } catch (err) {
    await embedded?.stop();
    throw new StartupError(`cannot connect to the test database: ${(err as Error).message}`, 'check DATABASE_URL (tests create and drop their own databases there), or unset it for an embedded PostgreSQL', { cause: err });
  }
  await admin.query(`drop database if exists ${templateDatabase}`);
  await admin.query(`create database ${templateDatabase}`);
  const templatePool = makePool({ connectionString: withDatabase(adminUrl, templateDatabase), max: 1 }, logger);
  await migrate(templatePool, logger);
  await templatePool.end();

  const keyDir = path.join(tmp, 'keys');
  await fs.mkdir(keyDir);
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  await fs.writeFile(path.join(keyDir, 'public.pem'), publicKey);
  await fs.writeFile(path.join(keyDir, 'private.pem'), privateKey);

  project.provide('adminDatabaseUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  project.provide('keyDir', keyDir);

  return async () => {
    await admin.query(`drop database if exists ${templateDatabase} with (force)`).catch(() => undefined);
    // Leftover per-file databases (a crashed worker) are dropped with the template's run.
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where datname like $1`, [`${templateDatabase}_t_%`]);
    for (const { datname } of rows) await admin.query(`drop database if exists ${datname} with (force)`).catch(() => undefined);
    await admin.end();
    await embedded?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
