/**
 * What every chaos scenario gets: a real PostgreSQL (embedded, or DATABASE_URL) with a
 * database of its own, the server built as `npm start` builds it (bench/lib/build.ts:
 * tsc -p tsconfig.build.json, run as `node dist/main.js`), server instances each behind
 * its own chaos proxy to the database, acking devices, REST load, and a list of checks
 * and figures that becomes the verdict. Every process and temp dir is registered with
 * bench/lib/processes.ts, whose cleanup() the runner calls however the scenario ends.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { buildForBench } from '../../bench/lib/build.js';
import { startBenchDatabase } from '../../bench/lib/database.js';
import { makeKeys, startServer, type BenchKeys, type RunningServer } from '../../bench/lib/our-server.js';
import { onCleanup, rssKiB } from '../../bench/lib/processes.js';
import { makeTokenMinter, startFleet, type Fleet } from './devices.js';
import { startChaosProxy, type ChaosProxy } from './proxy.js';

export interface ChaosOptions {
  devices: number;
  rate: number;
  outageSeconds: number;
  minutes: number;
  /** DATABASE_TIMEOUT_MS given to the servers: the bound a REST call may wait during an outage. */
  databaseTimeoutMs: number;
  /** Actuations the growth scenario's history holds (sessions: half as many). */
  history: number;
  /** A server already built (its dist/main.js, with migrations/ beside dist/): skips the build. */
  serverMain?: string;
}

export interface Instance {
  name: string;
  id: string;
  server: RunningServer;
  /** The proxy between this instance and PostgreSQL. */
  proxy: ChaosProxy;
  wsUrl: string;
  pid: number;
  rssKiB(): number;
  exited(): boolean;
  /** '' while running; else the exit code or signal and the last lines it wrote. */
  exitDescription(): string;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChaosDatabase {
  /** Direct (unproxied) URL of this scenario's database. */
  url: string;
  /** A direct pool for the accounting and for pg_terminate_backend. */
  pool: pg.Pool;
}

export class ChaosContext {
  readonly checks: Check[] = [];
  readonly figures: [string, string][] = [];
  readonly token: (deviceId: string) => string;
  private fleets: Fleet[] = [];

  private constructor(
    readonly options: ChaosOptions,
    readonly db: ChaosDatabase,
    private readonly createDatabase: (label: string) => Promise<ChaosDatabase>,
    private readonly serverMain: string,
    private readonly keys: BenchKeys,
    private readonly tmp: string,
    readonly log: (line: string) => void,
  ) {
    this.token = makeTokenMinter(keys.privateKeyPem);
  }

  static async create(root: string, options: ChaosOptions, log: (line: string) => void): Promise<ChaosContext> {
    const started = Date.now();
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-chaos-'));
    onCleanup(() => fs.rm(tmp, { recursive: true, force: true }));
    const build = async (): Promise<string> => options.serverMain ?? (await buildForBench(root)).serverMain;
    const [database, serverMain, keys] = await Promise.all([startBenchDatabase({ fsync: false }), build(), makeKeys(tmp)]);
    const built = options.serverMain ? `server ${serverMain}` : 'server built from src/ (tsc -p tsconfig.build.json)';
    log(`database: ${database.description}; ${built}, run as node dist/main.js; set-up ${Date.now() - started} ms`);
    const createDatabase = async (label: string): Promise<ChaosDatabase> => {
      const { url } = await database.create(label);
      const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'chaos accounting' });
      pool.on('error', () => undefined);
      onCleanup(() => pool.end());
      return { url, pool };
    };
    return new ChaosContext(options, await createDatabase('chaos'), createDatabase, serverMain, keys, tmp, log);
  }

  /** Another empty database (e.g. the growth scenario's empty side). */
  database(label: string): Promise<ChaosDatabase> {
    return this.createDatabase(label);
  }

  /** Starts one server instance (NODE_ENV=production, LOG_LEVEL=warn) behind its own chaos proxy to `db`. */
  async startInstance(name: string, env: NodeJS.ProcessEnv = {}, db: ChaosDatabase = this.db): Promise<Instance> {
    const direct = new URL(db.url);
    const proxy = await startChaosProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
    onCleanup(() => proxy.close());
    const proxied = new URL(db.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const id = `chaos-${name}-${process.pid}`;
    const server = await startServer({
      kind: 'ours',
      script: this.serverMain,
      databaseUrl: proxied.toString(),
      keys: this.keys,
      tmp: this.tmp,
      instanceId: id,
      env: { DATABASE_TIMEOUT_MS: String(this.options.databaseTimeoutMs), ...env },
    });
    await this.waitFor(`${name} ready`, 60_000, async () => (await fetch(`${server.origin}/readyz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined))?.status === 200);
    const child = server.server.child;
    return {
      name,
      id,
      server,
      proxy,
      wsUrl: `ws://127.0.0.1:${server.port}/`,
      pid: server.server.pid,
      rssKiB: () => rssKiB(server.server.pid),
      exited: () => child.exitCode !== null || child.signalCode !== null,
      exitDescription: () => {
        if (child.exitCode === null && child.signalCode === null) return '';
        // Node's own crash report (stderr) rather than the server's JSON log lines.
        const plain = server.server.output.text().split('\n').filter((l) => !l.trimStart().startsWith('{') && !/^\s+at /.test(l) && l.trim() !== '');
        const error = plain.filter((l) => /^\w*error\b|Emitted|throw/i.test(l.trim())).slice(-4).join(' | ') || plain.slice(-4).join(' | ');
        return `exited (${child.exitCode ?? child.signalCode}): ${error.trim().slice(0, 300)}`;
      },
    };
  }

  /** Acking devices connected to `url`; stopped at the end of the scenario if still running. */
  fleet(url: string, ids: readonly string[], spreadMs?: number): Fleet {
    const fleet = startFleet({ url, ids, token: this.token, spreadMs });
    this.fleets.push(fleet);
    onCleanup(() => fleet.stop());
    return fleet;
  }

  check(name: string, ok: boolean, detail = ''): boolean {
    this.checks.push({ name, ok, detail });
    this.log(`  ${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
    return ok;
  }

  figure(label: string, value: string | number): void {
    const text = typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: 1 }) : value;
    this.figures.push([label, text]);
    this.log(`  ${label}: ${text}`);
  }

  /** Polls `condition` every 100 ms; returns the ms it took, or throws naming `what` after `timeoutMs`. */
  async waitFor(what: string, timeoutMs: number, condition: () => Promise<boolean> | boolean): Promise<number> {
    const started = Date.now();
    for (;;) {
      if (await condition()) return Date.now() - started;
      if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Like waitFor, but reports a miss as `undefined` instead of throwing (the scenario checks it). */
  async within(timeoutMs: number, condition: () => Promise<boolean> | boolean): Promise<number | undefined> {
    return this.waitFor('', timeoutMs, condition).catch(() => undefined);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
