import crypto from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { makePool, type Pool } from '../../src/db/pool.js';
import { makeLogger } from '../../src/logger.js';
import { withDatabase } from '../global-setup.js';

export interface TestDatabase {
  url: string;
  name: string;
  pool: Pool;
  drop(): Promise<void>;
}

/** A fresh database cloned from the migrated template: each test file (or test) gets its own. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const template = inject('templateDatabase');
  const name = `${template}_t_${crypto.randomBytes(5).toString('hex')}`;
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.query(`create database ${name} template ${template}`);
        break;
      } catch (err) {
        // Two files cloning the template at the same moment: one waits and tries again.
        if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  const pool = makePool({ connectionString: url, max: 10 }, makeLogger({ level: 'silent' }));
  return {
    url,
    name,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client(adminUrl);
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}
