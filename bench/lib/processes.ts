/**
 * Child processes and temp dirs of a bench run, and what /proc says about them.
 * Everything registered here is killed / removed by `cleanup()`, which run.ts
 * calls on success, on error and on SIGINT/SIGTERM.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];

export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

/** Kills every child still alive, then runs the registered cleanups in reverse order. Safe to call twice. */
export async function cleanup(): Promise<void> {
  for (const child of children) await killChild(child);
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`bench cleanup: ${(err as Error).message}\n`);
    }
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * The exit of a tool that starts processes (bench, chaos): cleans up once, then exits; SIGINT,
 * SIGTERM and SIGHUP clean up too, and a second signal exits at once.
 */
export function exitCleaningUp(tool: string): (code: number) => Promise<never> {
  let exiting = false;
  async function exit(code: number): Promise<never> {
    if (!exiting) {
      exiting = true;
      await cleanup();
    }
    process.exit(code);
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\n${tool}: ${signal}, cleaning up\n`);
      if (exiting) process.exit(130);
      void exit(130);
    });
  }
  return exit;
}

/** SIGTERM (or the given signal), then SIGKILL after `graceMs`; resolves when the child has exited. */
export async function killChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', graceMs = 5_000): Promise<void> {
  if (!isRunning(child)) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

/** The last `max` bytes a child wrote to stdout/stderr, for error messages. */
export interface OutputTail {
  text(): string;
}

function tail(child: ChildProcess, max = 16_384): OutputTail {
  let text = '';
  const append = (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-max);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return { text: () => text };
}

/**
 * Code injected with `--import` into both servers under test, identically: on
 * SIGUSR2 run a full GC (needs --expose-gc) so RSS is read without collectable
 * garbage; exit if the bench (the parent) is gone. It does not touch the server.
 */
const SERVER_HOOK = `
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(1); }, 1000).unref();
process.on('SIGUSR2', () => { globalThis.gc?.(); globalThis.gc?.(); });
`;
export const SERVER_HOOK_IMPORT = `data:text/javascript;base64,${Buffer.from(SERVER_HOOK).toString('base64')}`;

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  output: OutputTail;
  /** The inspector's ws:// URL, when started with --inspect (resolves once node prints it). */
  inspectorUrl(timeoutMs: number): Promise<string>;
}

export function spawnServer(script: string, nodeArgs: string[], env: NodeJS.ProcessEnv, cwd: string): ServerProcess {
  const child = spawn(process.execPath, ['--expose-gc', '--import', SERVER_HOOK_IMPORT, ...nodeArgs, script], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (child.pid === undefined) throw new Error(`could not start ${script}`);
  const output = tail(child);
  return {
    child,
    pid: child.pid,
    output,
    async inspectorUrl(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = /Debugger listening on (ws:\/\/\S+)/.exec(output.text());
        if (match) return match[1]!;
        if (Date.now() > deadline) throw new Error(`no inspector URL from ${script}:\n${output.text()}`);
        await sleep(50);
      }
    },
  };
}

/** Runs a command to completion (killed at cleanup like every child); resolves with its exit code and output. */
export function runTracked(command: string, args: string[], cwd: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, output });
    });
  });
}

export function forkClient(script: string): ChildProcess {
  const child = fork(script, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Polls a TCP connect to 127.0.0.1:port until it succeeds; fails if the process exits or the time is up. */
export async function waitForPort(port: number, server: ServerProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isRunning(server.child)) throw new Error(`server exited (${server.child.exitCode ?? server.child.signalCode}) before listening:\n${server.output.text()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`server did not listen on ${port} within ${timeoutMs} ms:\n${server.output.text()}`);
    await sleep(100);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** VmRSS of a process in KiB. */
export function rssKiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

/** CPU time of all threads of a process, in ms (from /proc/<pid>/task/<tid>/schedstat, ns precision). */
export function cpuMs(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // thread gone between readdir and read
    }
  }
  return ns / 1e6;
}

export function openFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The soft open-files limit of a process. */
export function maxOpenFiles(pid: number): number {
  const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return match && match[1] !== 'unlimited' ? Number(match[1]) : Number.POSITIVE_INFINITY;
}
