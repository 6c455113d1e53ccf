/**
 * Decides which enabled streams this instance holds: exactly one instance per
 * stream in the deployment.
 *
 * Election is a session-level advisory lock per stream, taken on a connection
 * this supervisor keeps out of the pool for as long as it runs. PostgreSQL drops
 * the locks the moment that connection ends (process killed, host gone once TCP
 * notices), and the other instances' next tick, every `supervisorIntervalMs`,
 * takes them over. If the lock connection fails here, every stream client stops at
 * once: its locks are gone. The tick also notices streams that were disabled,
 * deleted or edited (`updated_at` moved) and restarts or releases them.
 */
import type { PoolClient } from 'pg';
import type { Pool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import * as streamsSql from './streams-sql.js';
import type { StreamClient } from './stream-client.js';

/** First key of the two-key advisory lock: the DSS stream namespace (any constant shared by all instances). */
const STREAM_LOCK_NAMESPACE = 0x0d55;

export interface SupervisedStream {
  id: string;
  name: string;
  url: string;
  streamKey: string;
  lastSeq: number | null;
}

export interface StreamSupervisor {
  /** Stream ids this instance holds now. */
  held(): string[];
  /** Runs a tick now (after a REST edit); resolves when it finished. */
  poke(): Promise<void>;
  stop(): Promise<void>;
}

export function startStreamSupervisor(options: {
  pool: Pool;
  logger: Logger;
  instanceId: string;
  intervalMs: number;
  startClient(stream: SupervisedStream): StreamClient;
  /** This instance let go of a stream (metrics drop its series). */
  onReleased?(streamId: string, why: string): void;
}): StreamSupervisor {
  const { pool, instanceId, intervalMs, startClient } = options;
  const log = options.logger.child({ component: 'dss-supervisor' });
  const held = new Map<string, { client: StreamClient; updatedAt: number }>();
  let lockClient: PoolClient | undefined;
  let running: Promise<void> | undefined;
  /** Streams being let go after the lock connection died; a tick waits for it before taking any again. */
  let releasing: Promise<void> | undefined;
  let stopped = false;

  async function release(id: string, why: string, unlock: boolean): Promise<void> {
    const entry = held.get(id);
    if (!entry) return;
    held.delete(id);
    await entry.client.stop();
    if (unlock && lockClient) await lockClient.query('select pg_advisory_unlock($1, hashtext($2))', [STREAM_LOCK_NAMESPACE, id]).catch(() => undefined);
    await streamsSql.markReleased(pool, id, instanceId).catch(() => undefined);
    log.info({ streamId: id, why }, 'dss: stream released');
    options.onReleased?.(id, why);
  }

  async function lockConnectionLost(err: unknown): Promise<void> {
    const lost = lockClient;
    lockClient = undefined;
    lost?.release(err instanceof Error ? err : new Error(String(err)));
    if (held.size > 0) log.warn({ err, streams: held.size }, 'dss: lock connection lost; stopping every held stream');
    await Promise.all([...held.keys()].map((id) => release(id, 'lock connection lost', false)));
  }

  async function tick(): Promise<void> {
    await releasing;
    if (stopped) return;
    if (!lockClient) {
      const client = await pool.connect();
      client.on('error', (err) => {
        if (lockClient === client) releasing = lockConnectionLost(err);
      });
      lockClient = client;
    }
    const client = lockClient;
    let rows;
    try {
      rows = await streamsSql.listStreamsForSupervisor(client);
    } catch (err) {
      if (lockClient === client) await (releasing = lockConnectionLost(err));
      throw err;
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const [id, entry] of held) {
      const row = byId.get(id);
      if (!row || !row.enabled) await release(id, row ? 'disabled' : 'deleted', true);
      else if (row.updatedAt.getTime() !== entry.updatedAt) await release(id, 'edited', true);
    }
    for (const row of rows) {
      if (stopped || !row.enabled || held.has(row.id)) continue;
      const { rows: lock } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as locked', [STREAM_LOCK_NAMESPACE, row.id]);
      if (!lock[0]?.locked) continue;
      // Re-read under the lock: the previous holder flushed its position before letting go.
      const fresh = await streamsSql.getStream(client, row.id);
      if (!fresh || !fresh.enabled) {
        await client.query('select pg_advisory_unlock($1, hashtext($2))', [STREAM_LOCK_NAMESPACE, row.id]);
        continue;
      }
      await streamsSql.markHeld(client, row.id, instanceId);
      log.info({ streamId: row.id, stream: row.name, lastSeq: fresh.lastSeq }, 'dss: stream acquired');
      held.set(row.id, {
        updatedAt: fresh.updatedAt.getTime(),
        client: startClient({ id: fresh.id, name: fresh.name, url: fresh.url, streamKey: fresh.streamKey, lastSeq: fresh.lastSeq }),
      });
    }
  }

  function runTick(): Promise<void> {
    running ??= tick()
      .catch((err) => log.warn({ err }, 'dss: supervisor tick failed'))
      .finally(() => (running = undefined));
    return running;
  }

  const timer = setInterval(() => void runTick(), intervalMs);
  timer.unref();
  void runTick();

  return {
    held: () => [...held.keys()],
    async poke() {
      await running;
      await runTick();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await releasing;
      await Promise.all([...held.keys()].map((id) => release(id, 'shutdown', false)));
      // Ending the session drops every lock this instance still has.
      lockClient?.release(true);
      lockClient = undefined;
    },
  };
}
