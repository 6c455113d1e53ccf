import pg from 'pg';
import type { Logger } from '../logger.js';
import { isDatabaseUnavailable } from './errors.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  connectionString: string;
  ssl?: false | { rejectUnauthorized: boolean; ca?: string };
  max?: number;
  applicationName?: string;
  /** Longest wait on the database: checkout, connect, each query (`DATABASE_TIMEOUT_MS`). (Default: 5 000) */
  timeoutMs?: number;
  /** Longest statement, when it must differ from `timeoutMs` (migrations build indexes). (Default: `timeoutMs`) */
  queryTimeoutMs?: number;
}

export const DEFAULT_DATABASE_TIMEOUT_MS = 5_000;

// bigint (int8) columns come back as JS numbers: ids and sequence numbers stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/**
 * What bounds every wait on one connection, for pooled and dedicated clients alike:
 * - `query_timeout` (client side) fails a query whose answer does not come, whatever the
 *   network does: a blackholed socket with data in flight is never given up by TCP keepalive,
 *   and by Linux only after ~15 minutes (`tcp_retries2`). Node exposes no `TCP_USER_TIMEOUT`.
 * - `statement_timeout` (server side, a little shorter) stops the statement and frees its
 *   locks, so the server usually answers first with 57014 and the connection stays usable.
 * - `idle_in_transaction_session_timeout` ends a session whose client went silent inside a
 *   transaction (it holds row locks, e.g. claimed actuations) when the client cannot.
 * - TCP keepalive finds dead idle connections (the LISTEN one too) without a query.
 * - `connectionTimeoutMillis` bounds a connect and a wait for a free pooled client.
 * - The server's own keepalive (`tcp_keepalives_*`, default: 2 hours of silence) is set to
 *   ~25 s, so that the server ends the session of a client that vanished, and with it the
 *   session's advisory locks (the DSS stream locks: another instance can take over) and
 *   row locks. (An `options` parameter in DATABASE_URL replaces this.)
 */
export function connectionLimits(timeoutMs: number, queryTimeoutMs = timeoutMs) {
  return {
    options: '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3',
    keepAlive: true,
    keepAliveInitialDelayMillis: Math.min(10_000, timeoutMs),
    query_timeout: queryTimeoutMs,
    statement_timeout: Math.max(1, Math.floor(queryTimeoutMs * 0.9)),
    idle_in_transaction_session_timeout: queryTimeoutMs,
    connectionTimeoutMillis: timeoutMs,
  };
}

export function makePool(options: PoolOptions, logger: Logger): Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    ssl: options.ssl || undefined,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'iot-websocket-server',
    idleTimeoutMillis: 30_000,
    ...connectionLimits(options.timeoutMs ?? DEFAULT_DATABASE_TIMEOUT_MS, options.queryTimeoutMs),
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', (err) => logger.warn({ err }, 'database: idle client error'));
  // A checked-out client between two queries has no listener of pg-pool's: PostgreSQL
  // terminating its backend (57P01, a restart) would be an unhandled 'error' event and end
  // the process. The holder learns on its next query ("not queryable"); release destroys it.
  pool.on('connect', (client) => client.on('error', (err) => logger.warn({ err }, 'database: connection lost while checked out')));
  return pool;
}

/**
 * Runs `fn` in a transaction on one client; commits on success, rolls back on any error.
 * A client whose connection failed or timed out is destroyed, never returned to the pool:
 * its socket may still deliver a late answer to whoever used it next.
 */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (isDatabaseUnavailable(err)) broken = err instanceof Error ? err : new Error(String(err));
    // Closing the connection rolls back too; otherwise (a constraint, a bug) the connection is in step.
    else await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr));
    throw err;
  } finally {
    client.release(broken);
  }
}
