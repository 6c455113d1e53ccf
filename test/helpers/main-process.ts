/**
 * The real server as a child process (`node --import tsx src/main.ts`), as
 * `npm run dev` runs it: for signals, exit codes and start-up failures, which an
 * in-process `buildApp` cannot show.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/db/embedded-postgres.js';
import { testKeyPaths } from './keys.js';
import { TEST_CREDENTIALS } from './server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  level?: number;
  msg?: string;
  [key: string]: unknown;
}

export interface ServerProcess {
  child: ChildProcess;
  /** Every stdout line parsed as JSON (pino); lines that are not JSON are kept as `{ msg: line }`. */
  logs: LogLine[];
  stderr(): string;
  /** Resolves with the first log line (past or future) that matches; rejects on exit or after `timeoutMs`. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running; for cleanup. */
  kill(): Promise<void>;
}

/** Starts `src/main.ts` with exactly `env` (plus PATH and HOME): nothing leaks in from the test runner's environment. */
export function startServerProcess(env: Record<string, string>): ServerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += String(chunk)));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      parsed = { msg: line };
    }
    logs.push(parsed);
    for (const listener of listeners) listener();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
      for (const listener of listeners) listener();
    }),
  );
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    waitForLog(match, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(match);
          if (found) return done(() => resolve(found));
          if (hasExited || child.exitCode !== null || child.signalCode !== null) {
            return done(() => reject(new Error(`server exited before the expected log line; stderr: ${stderr}\nstdout: ${JSON.stringify(logs.slice(-10))}`)));
          }
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no matching log line within ${timeoutMs} ms; last: ${JSON.stringify(logs.slice(-5))}`))), timeoutMs);
        const done = (finish: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          finish();
        };
        listeners.add(check);
        check();
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export interface InstanceProcess {
  process: ServerProcess;
  instanceId: string;
  port: number;
  wsUrl: string;
  /** fetch against the REST API with the test credentials; `json` is sent as the body. */
  api(path: string, init?: { method?: string; json?: unknown }): Promise<Response>;
}

/**
 * One server instance as a process on `databaseUrl`, with the test keys and credentials,
 * a free port and a fast instance heartbeat; resolves once it listens (with `WORKERS` > 1 in
 * `env`: once the primary says all its workers listen).
 */
export async function startInstanceProcess(databaseUrl: string, instanceId: string, env: Record<string, string> = {}): Promise<InstanceProcess> {
  const ready = Number(env.WORKERS ?? '1') > 1 ? 'cluster: all workers listening' : 'server: listening';
  const port = await freePort();
  const p = startServerProcess({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    INSTANCE_ID: instanceId,
    INSTANCE_HEARTBEAT_MS: '200',
    DEVICE_PUBLIC_KEY_PATH: testKeyPaths().publicKeyPath,
    API_USERNAME: TEST_CREDENTIALS.username,
    API_PASSWORD: TEST_CREDENTIALS.password,
    LOG_LEVEL: 'info',
    ...env,
  });
  try {
    await p.waitForLog((l) => l.msg === ready, env.WORKERS === undefined ? undefined : 90_000);
  } catch (err) {
    await p.kill();
    throw err;
  }
  const authorization = 'Basic ' + Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64');
  return {
    process: p,
    instanceId,
    port,
    wsUrl: `ws://127.0.0.1:${port}/`,
    api: (path, init = {}) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: init.method ?? 'GET',
        headers: { authorization, 'content-type': 'application/json' },
        body: init.json === undefined ? undefined : JSON.stringify(init.json),
      }),
  };
}
