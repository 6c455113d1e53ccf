/**
 * Applies `migrations/NNNN_name.sql` in order, each in its own transaction, and
 * records them in `schema_migrations`. A transaction-scoped advisory lock makes
 * instances that start together take turns: the first applies, the others then
 * find the rows and skip.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from './pool.js';
import type { Logger } from '../logger.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

/** Any constant works as long as every instance uses the same one. */
const MIGRATION_LOCK_KEY = 0x10757e;

interface MigrationFile {
  version: number;
  name: string;
  file: string;
}

export async function listMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  return names.map((name) => {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(name);
    if (!match) throw new Error(`migrations: "${name}" does not match NNNN_name.sql`);
    return { version: Number(match[1]), name, file: path.join(dir, name) };
  });
}

export async function migrate(pool: Pool, logger: Logger, dir = MIGRATIONS_DIR): Promise<number> {
  const migrations = await listMigrations(dir);
  const client = await pool.connect();
  let applied = 0;
  try {
    await client.query(`create table if not exists schema_migrations (
      version integer primary key,
      name text not null,
      applied_at timestamptz not null default now())`).catch(ignoreConcurrentCreate);
    for (const migration of migrations) {
      await client.query('begin');
      try {
        await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
        const done = await client.query('select 1 from schema_migrations where version = $1', [migration.version]);
        if (done.rowCount === 0) {
          await client.query(await fs.readFile(migration.file, 'utf8'));
          await client.query('insert into schema_migrations (version, name) values ($1, $2)', [migration.version, migration.name]);
          applied++;
          logger.info({ migration: migration.name }, 'database: migration applied');
        }
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw new Error(`migration ${migration.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    client.release();
  }
  return applied;
}

// Two instances running `create table if not exists` at the same moment can still
// collide on the catalog's unique index; the table then exists, which is all we need.
function ignoreConcurrentCreate(err: { code?: string }): void {
  if (err.code !== '23505' && err.code !== '42P07') throw err;
}
