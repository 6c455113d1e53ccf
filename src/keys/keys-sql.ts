/** The `api_keys` table (migrations/0007_api_keys.sql). */
import crypto from 'node:crypto';
import type { Pool } from '../db/pool.js';
import { displayPrefix, generateKey } from './api-key.js';

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** `iotws_<lookup id>`: the key's public start, to recognise it. */
  prefix: string;
  scopes: string[];
  /** The accounts the key is limited to; null: every account. */
  accounts: string[] | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
  /** The key's own rate limit; `null`: the configured default. */
  rateLimit: RateLimit | null;
}

/** Requests per second and the burst above it (a token bucket). */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/** What authentication needs of a key (the hash, never the secret). */
export interface KeyCredential {
  id: string;
  name: string;
  secretHash: Buffer;
  scopes: string[];
  accounts: string[] | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  rateLimit: RateLimit | null;
}

const RECORD_COLUMNS = `id, name, lookup_id, scopes, accounts, created_at, expires_at, revoked_at, last_used_at, rate_limit, rate_burst`;

interface RecordRow {
  id: string;
  name: string;
  lookup_id: string;
  scopes: string[];
  accounts: string[] | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  rate_limit: number | null;
  rate_burst: number | null;
}

function rateLimitOf(row: { rate_limit: number | null; rate_burst: number | null }): RateLimit | null {
  return row.rate_limit === null ? null : { perSecond: row.rate_limit, burst: row.rate_burst ?? 2 * row.rate_limit };
}

function toRecord(row: RecordRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    prefix: displayPrefix(row.lookup_id),
    scopes: row.scopes,
    accounts: row.accounts,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    rateLimit: rateLimitOf(row),
  };
}

/** Creates a key; the result's `key` is the only time the secret exists outside the caller. */
export async function createKey(
  pool: Pool,
  input: { name: string; scopes: string[]; expiresInDays?: number; accounts?: string[]; rateLimit?: { perSecond: number; burst?: number } },
): Promise<ApiKeyRecord & { key: string }> {
  const generated = generateKey();
  const { rows } = await pool.query<RecordRow>(
    `insert into api_keys (id, name, lookup_id, secret_hash, scopes, expires_at, accounts, rate_limit, rate_burst)
     values ($1, $2, $3, $4, $5, case when $6::int is null then null else now() + make_interval(days => $6::int) end, $7, $8, $9)
     returning ${RECORD_COLUMNS}`,
    [
      crypto.randomUUID(),
      input.name,
      generated.lookupId,
      generated.secretHash,
      input.scopes,
      input.expiresInDays ?? null,
      input.accounts ?? null,
      input.rateLimit?.perSecond ?? null,
      input.rateLimit ? (input.rateLimit.burst ?? 2 * input.rateLimit.perSecond) : null,
    ],
  );
  return { ...toRecord(rows[0]!), key: generated.key };
}

/** Every key, revoked and expired ones too, oldest first (at most `limit`). */
export async function listKeys(pool: Pool, limit: number): Promise<ApiKeyRecord[]> {
  const { rows } = await pool.query<RecordRow>(`select ${RECORD_COLUMNS} from api_keys order by created_at, id limit $1`, [limit]);
  return rows.map(toRecord);
}

export async function getKey(pool: Pool, id: string): Promise<ApiKeyRecord | undefined> {
  const { rows } = await pool.query<RecordRow>(`select ${RECORD_COLUMNS} from api_keys where id = $1`, [id]);
  return rows[0] && toRecord(rows[0]);
}

/** Revokes a key (idempotent: a revoked key keeps its first revocation time); `undefined` if unknown. */
export async function revokeKey(pool: Pool, id: string): Promise<ApiKeyRecord | undefined> {
  const { rows } = await pool.query<RecordRow>(
    `update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1 returning ${RECORD_COLUMNS}`,
    [id],
  );
  return rows[0] && toRecord(rows[0]);
}

export async function findCredential(pool: Pool, lookupId: string): Promise<KeyCredential | undefined> {
  const { rows } = await pool.query<{
    id: string;
    name: string;
    secret_hash: Buffer;
    scopes: string[];
    accounts: string[] | null;
    expires_at: Date | null;
    revoked_at: Date | null;
    rate_limit: number | null;
    rate_burst: number | null;
  }>(`select id, name, secret_hash, scopes, accounts, expires_at, revoked_at, rate_limit, rate_burst from api_keys where lookup_id = $1`, [lookupId]);
  const row = rows[0];
  return (
    row && {
      id: row.id,
      name: row.name,
      secretHash: row.secret_hash,
      scopes: row.scopes,
      accounts: row.accounts,
      expiresAt: row.expires_at,
      revokedAt: row.revoked_at,
      rateLimit: rateLimitOf(row),
    }
  );
}

export async function touchKey(pool: Pool, id: string): Promise<void> {
  await pool.query(`update api_keys set last_used_at = now() where id = $1`, [id]);
}
