/**
 * db/pool.ts against a real PostgreSQL through a real TCP proxy: a connection whose query
 * timed out is destroyed, not handed out again, and the failed transaction does not wait a
 * second timeout for its ROLLBACK.
 *
 * Shown to fail without the mechanism: with `client.release()` instead of
 * `client.release(broken)` in withTransaction, the proxy saw no new connection (the wedged
 * one went back to the pool); with the ROLLBACK always sent, the failure took two timeouts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/db/errors.js';
import { makePool, withTransaction } from '../../src/db/pool.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const TIMEOUT_MS = 1_000;
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('withTransaction on a connection that stops answering', () => {
  it('fails within one timeout, destroys the connection, and the pool works again once the network does', async () => {
    const direct = new URL(db.url);
    const proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port) });
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    const pool = makePool({ connectionString: url.toString(), max: 1, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
    try {
      expect(await withTransaction(pool, async (c) => (await c.query<{ n: number }>('select 1 as n')).rows[0]!.n)).toBe(1);
      expect(proxy.accepted).toBe(1);

      proxy.blackhole('both');
      const started = Date.now();
      const err = await withTransaction(pool, (c) => c.query('select 2')).catch((e: unknown) => e);
      const ms = Date.now() - started;
      expect(isDatabaseUnavailable(err)).toBe(true);
      expect(ms).toBeLessThan(TIMEOUT_MS + 600);

      proxy.forward();
      expect((await pool.query<{ n: number }>('select 3 as n')).rows[0]!.n).toBe(3);
      // The wedged connection was destroyed; this answer came on a new one.
      expect(proxy.accepted).toBe(2);
    } finally {
      proxy.forward();
      await pool.end();
      await proxy.stop();
    }
  });

  it('keeps a connection whose transaction failed for a reason of its own (the server answered)', async () => {
    const pool = makePool({ connectionString: db.url, max: 1, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
    try {
      const pid = async () => (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const before = await pid();
      const err = await withTransaction(pool, (c) => c.query('select 1/0')).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('22012');
      expect(isDatabaseUnavailable(err)).toBe(false);
      expect(await pid()).toBe(before);
    } finally {
      await pool.end();
    }
  });

  it('classifies a statement over the server-side statement_timeout as unavailable', async () => {
    const pool = makePool({ connectionString: db.url, max: 1, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
    try {
      const err = await pool.query('select pg_sleep(5)').catch((e: unknown) => e);
      // statement_timeout (90% of the timeout) answers before the client-side query_timeout.
      expect((err as { code?: string }).code).toBe('57014');
      expect(isDatabaseUnavailable(err)).toBe(true);
    } finally {
      await pool.end();
    }
  });

  it('sets the bounds on every connection, the server side ones included', async () => {
    const pool = makePool({ connectionString: db.url, max: 1, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
    try {
      const { rows } = await pool.query<Record<string, string>>(
        `select current_setting('statement_timeout') as st, current_setting('idle_in_transaction_session_timeout') as idle,
                current_setting('tcp_keepalives_idle') as ka_idle, current_setting('tcp_keepalives_count') as ka_count`,
      );
      expect(rows[0]).toEqual({ st: '900ms', idle: '1s', ka_idle: '10', ka_count: '3' });
    } finally {
      await pool.end();
    }
  });
  it('survives PostgreSQL terminating a checked-out connection between two queries (a restart)', async () => {
    // Without the pool's 'connect' listener this is an unhandled 'error' event: the process
    // (here the test worker) dies, as the chaos db-restart scenario saw the server do.
    const pool = makePool({ connectionString: db.url, max: 2, timeoutMs: TIMEOUT_MS }, makeLogger({ level: 'silent' }));
    try {
      const err = await withTransaction(pool, async (c) => {
        const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
        const ended = new Promise((resolve) => c.once('end', resolve));
        await pool.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        // The FATAL 57P01 arrives while no query of this client is active; then the socket closes.
        await ended;
        return c.query('select 1');
      }).catch((e: unknown) => e);
      expect(isDatabaseUnavailable(err)).toBe(true);
      // The lost client was destroyed; the pool answers on a live one.
      expect((await pool.query<{ n: number }>('select 4 as n')).rows[0]!.n).toBe(4);
    } finally {
      await pool.end();
    }
  });
});
