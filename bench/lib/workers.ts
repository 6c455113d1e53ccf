/**
 * Our server run with WORKERS=N (a cluster primary and N workers on one port), as the
 * connect, actuations and ceilings benches start it: its process tree, from /proc, and
 * a bounded wait until every worker is up (the port answers once the first one listens).
 */
import fs from 'node:fs';
import pg from 'pg';
import { killChild, sleep, type ServerProcess } from './processes.js';
import { startServer, type RunningServer } from './our-server.js';

/** A process and its children (a cluster primary and its workers), from /proc. */
export function processTree(pid: number): number[] {
  const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children];
}

/** Every worker registered as an instance (`<instanceId>-w<i>`, as it starts listening) and forked: bounded by 60 s. */
export async function allWorkersListening(server: ServerProcess, databaseUrl: string, instanceId: string, workers: number): Promise<void> {
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from instances where id like $1`, [`${instanceId}-w%`]);
      if (rows[0]!.n === workers && processTree(server.pid).length === workers + 1) return;
      if (Date.now() > deadline) throw new Error(`only ${rows[0]!.n} of ${workers} workers registered within 60 s`);
      await sleep(100);
    }
  } finally {
    await client.end();
  }
}

/** Our server with WORKERS=N and its process tree (primary first), as the actuations and ceilings benches run it. */
export interface WorkersServer {
  running: RunningServer;
  tree: number[];
}

/** Starts our server with WORKERS=`workers` and returns once every worker is up; a server whose workers never came up is stopped. */
export async function startWorkersServer(options: Omit<Parameters<typeof startServer>[0], 'kind' | 'env'> & { databaseUrl: string; workers: number }): Promise<WorkersServer> {
  const { workers, ...start } = options;
  const running = await startServer({ ...start, kind: 'ours', env: { WORKERS: String(workers) } });
  try {
    if (workers > 1) await allWorkersListening(running.server, options.databaseUrl, options.instanceId, workers);
    return { running, tree: processTree(running.server.pid) };
  } catch (err) {
    await stopWorkersServer({ running, tree: processTree(running.server.pid) });
    throw err;
  }
}

/** SIGKILL to the primary, then to every worker (they exit when the primary's IPC channel closes; this makes sure of it). */
export async function stopWorkersServer({ running, tree }: WorkersServer): Promise<void> {
  await killChild(running.server.child, 'SIGKILL', 15_000);
  for (const pid of tree.slice(1)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
