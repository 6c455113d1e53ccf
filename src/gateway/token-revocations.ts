/**
 * Device token revocations, as every instance keeps them: the whole table in memory
 * (one entry per device that has a revocation: ~100 bytes each), so a connecting device
 * costs a map look-up, never a query.
 *
 * How fresh: a revocation committed on any instance NOTIFYs `device_tokens_revoked`,
 * applied on arrival (milliseconds); and on every instance heartbeat (INSTANCE_HEARTBEAT_MS)
 * the rows changed since the last read are read again (with an overlap of 30 s for
 * transactions that committed late), so a lost notification or a LISTEN connection that
 * was down delays a revocation by at most one heartbeat (plus that query, bounded by
 * DATABASE_TIMEOUT_MS). After the LISTEN connection reconnects, the whole table is read.
 * While the database is unreachable nothing is refreshed, but then no device can open a
 * session either (its row must be written first).
 *
 * The rule: a token is refused when its device has a revocation and the token has no
 * `iat`, or was issued (`iat`, whole seconds) before the revocation's time (milliseconds,
 * the database's clock). So a token issued in the same second as the revocation, even
 * just after it, is refused too: issue new tokens a second or more later.
 */
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { revocationsChangedSince, type Revocation } from './revocations-sql.js';

/** Rows re-read before the latest change seen, for transactions that took `now()` before it but committed after. */
const OVERLAP_MS = 30_000;

export interface TokenRevocations {
  /** Whether a token of `deviceId` issued at `issuedAt` (`iat`, seconds; `null`: none) is refused. */
  refuses(deviceId: string, issuedAt: number | null): boolean;
  /** Reads the whole table (at start, after the LISTEN connection reconnects). */
  load(): Promise<void>;
  /** Reads the rows changed since the last read; errors are logged, not thrown. */
  refresh(): Promise<void>;
  /** Applies a NOTIFY payload of `device_tokens_revoked`. */
  notified(payload: string): void;
  /** Applies a revocation this instance just committed (before its NOTIFY comes back). */
  add(revocation: Revocation): void;
}

export function makeTokenRevocations(options: {
  pool: Pool;
  logger: Logger;
  /** Told of each revocation that is new or moved forward (to close the device's connection here). */
  onRevoked?(revocation: Revocation): void;
}): TokenRevocations {
  const { pool, logger } = options;
  const revokedBefore = new Map<string, number>();
  let latest: Date | null = null;

  function apply(revocation: Revocation): void {
    const known = revokedBefore.get(revocation.deviceId);
    if (known !== undefined && known >= revocation.revokedBefore) return;
    revokedBefore.set(revocation.deviceId, revocation.revokedBefore);
    options.onRevoked?.(revocation);
  }

  async function read(since: Date | null): Promise<void> {
    const changed = await revocationsChangedSince(pool, since);
    changed.revocations.forEach(apply);
    if (changed.latest && (latest === null || changed.latest > latest)) latest = changed.latest;
  }

  return {
    refuses(deviceId, issuedAt) {
      const before = revokedBefore.get(deviceId);
      if (before === undefined) return false;
      return issuedAt === null || issuedAt * 1000 < before;
    },
    load: () => read(null),
    async refresh() {
      try {
        await read(latest === null ? null : new Date(latest.getTime() - OVERLAP_MS));
      } catch (err) {
        logger.warn({ err }, 'device tokens: revocations not refreshed; the next heartbeat retries');
      }
    },
    notified(payload) {
      const message = JSON.parse(payload) as { deviceId?: unknown; revokedBefore?: unknown };
      if (typeof message.deviceId !== 'string' || typeof message.revokedBefore !== 'number') throw new Error('not a revocation');
      apply({ deviceId: message.deviceId, revokedBefore: message.revokedBefore });
    },
    add: apply,
  };
}
