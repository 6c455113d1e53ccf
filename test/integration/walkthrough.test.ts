/**
 * The README's "Five-minute walk-through", run as written: its shell blocks, in order,
 * each in the terminal it names (one bash per terminal, so variables carry over as they
 * would), from a fresh copy of the repository (its own ./data and ./keys), with the real
 * `npm start` and its embedded PostgreSQL. A block's last command marked
 * `# keeps running` is started in its own process group and waited for; a later block in
 * the same terminal first stops it with SIGINT, as Ctrl-C would. The only edits are the
 * ports: 5000 and 7070 become free ones (the machine may use those).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../../src/db/embedded-postgres.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The walk-through's ```sh blocks, each with the terminal it names. */
function walkthroughBlocks(readme: string): { terminal: string; lines: string[]; ctrlC?: string }[] {
  const start = readme.indexOf('## Five-minute walk-through');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end);
  const blocks: { terminal: string; lines: string[]; ctrlC?: string }[] = [];
  for (const m of section.matchAll(/^( *)```sh\n([\s\S]*?)^\1```$/gm)) {
    const indent = m[1]!.length;
    const lines = m[2]!.split('\n').map((l) => l.slice(indent)).filter((l) => l.trim() !== '');
    const terminal = /^# terminal (\d+)/.exec(lines[0] ?? '')?.[1];
    if (!terminal) throw new Error(`a walk-through block does not start with "# terminal N": ${lines[0]}`);
    // "# terminal 3, after Ctrl-C in terminal 2": stop what terminal 2 runs first.
    const ctrlC = /after Ctrl-C in terminal (\d+)/.exec(lines[0]!)?.[1];
    blocks.push({ terminal, lines: lines.slice(1), ctrlC });
  }
  return blocks;
}

interface Holder {
  pid: number;
  log: string;
}

class Terminal {
  readonly bash: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  stderr = '';
  holder: Holder | undefined;

  constructor(cwd: string, env: NodeJS.ProcessEnv) {
    this.bash = spawn('bash', ['--norc', '--noprofile'], { cwd, env });
    readline.createInterface({ input: this.bash.stdout }).on('line', (line) => {
      this.lines.push(line);
      for (const w of this.waiters.splice(0)) w();
    });
    this.bash.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.bash.stdin.write('set -euo pipefail\n');
  }

  /** Runs `script` and resolves with what it printed, once it finished; rejects if bash died (a failed command under set -e). */
  run(script: string, timeoutMs: number): Promise<string> {
    const marker = `__done_${Math.random().toString(36).slice(2)}`;
    const from = this.lines.length;
    // curl's answers end without a newline: the marker goes on a line of its own.
    this.bash.stdin.write(`${script}\nprintf '\\n%s\\n' ${marker}\n`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms running:\n${script}\nstderr: ${this.stderr}`)), timeoutMs);
      const check = () => {
        const at = this.lines.indexOf(marker, from);
        if (at >= 0) {
          clearTimeout(timer);
          return resolve(this.lines.slice(from, at).join('\n').replace(/\n$/, ''));
        }
        if (this.bash.exitCode !== null) {
          clearTimeout(timer);
          return reject(new Error(`a command failed (bash exited ${this.bash.exitCode}) in:\n${script}\nstderr: ${this.stderr}`));
        }
        this.waiters.push(check);
      };
      this.bash.once('exit', () => check());
      check();
    });
  }
}

const terminals = new Map<string, Terminal>();
let copy: string | undefined;

function stopHolder(holder: Holder | undefined): void {
  if (!holder) return;
  try {
    process.kill(-holder.pid, 'SIGINT');
  } catch {
    // already gone
  }
}

afterAll(async () => {
  for (const t of terminals.values()) stopHolder(t.holder);
  // The server stops its embedded PostgreSQL on SIGINT; give it the time to.
  await new Promise((r) => setTimeout(r, 5_000));
  for (const t of terminals.values()) {
    if (t.holder) {
      try {
        process.kill(-t.holder.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    t.bash.kill('SIGKILL');
  }
  if (copy) fs.rmSync(copy, { recursive: true, force: true });
}, 30_000);

const READY = [/"msg":"server: listening"/, / authenticated$/m, /dss-sim: listening/];

async function waitForHolder(holder: Holder, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = fs.existsSync(holder.log) ? fs.readFileSync(holder.log, 'utf8') : '';
    if (READY.some((r) => r.test(log))) return log;
    let alive = true;
    try {
      process.kill(holder.pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) throw new Error(`a command that should keep running exited:\n${log}`);
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitForExit(holder: Holder, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(holder.pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`still running ${timeoutMs} ms after Ctrl-C:\n${fs.readFileSync(holder.log, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

it('the README walk-through works as written', async () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = walkthroughBlocks(readme);
  expect(blocks.length).toBeGreaterThanOrEqual(6);

  // A fresh copy of the repository's files (what a clone has), sharing node_modules.
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-walkthrough-'));
  fs.chmodSync(copy, 0o755);
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).stdout.split('\0').filter(Boolean);
  for (const file of files) {
    if (!fs.existsSync(path.join(root, file))) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(copy, file)), { recursive: true });
    fs.copyFileSync(path.join(root, file), path.join(copy, file));
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(copy, 'node_modules'));

  const port = await freePort();
  const dssPort = await freePort();
  const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? copy, PORT: String(port), LANG: 'C.UTF-8' };
  const outputs: string[] = [];
  const logs = new Map<string, string[]>();

  const holderLogs = () =>
    [...logs.values()]
      .flat()
      .map((f) => `--- ${path.basename(f)}:\n${fs.existsSync(f) ? fs.readFileSync(f, 'utf8').slice(-3000) : ''}`)
      .join('\n');
  try {
  for (const [i, block] of blocks.entries()) {
    const script = block.lines.map((l) => l.replaceAll('localhost:5000', `localhost:${port}`).replaceAll('7070', String(dssPort)));
    let terminal = terminals.get(block.terminal);
    if (!terminal) terminals.set(block.terminal, (terminal = new Terminal(copy, env)));
    const other = block.ctrlC === undefined ? undefined : terminals.get(block.ctrlC);
    if (other?.holder) {
      stopHolder(other.holder);
      await waitForExit(other.holder, 20_000);
      other.holder = undefined;
    }
    if (terminal.holder) {
      // Ctrl-C what this terminal was running.
      stopHolder(terminal.holder);
      terminal.holder = undefined;
    }
    const last = script.at(-1)!;
    const keepsRunning = /#\s*keeps running\s*$/.test(last);
    const now = keepsRunning ? script.slice(0, -1) : script;
    if (now.length > 0) outputs.push(await terminal.run(now.join('\n'), 120_000));
    if (keepsRunning) {
      const log = path.join(copy, `.terminal-${block.terminal}-${i}.log`);
      const command = last.replace(/\s+#\s*keeps running\s*$/, '');
      const pid = Number((await terminal.run(`setsid ${command} > ${log} 2>&1 < /dev/null &\necho $!`, 10_000)).trim());
      terminal.holder = { pid, log };
      logs.set(`${block.terminal}:${i}`, [log]);
      // npm start builds first, then initialises the embedded database: minutes on a loaded machine.
      await waitForHolder(terminal.holder, 240_000);
    }
  }
  } catch (err) {
    throw new Error(`${(err as Error).message}\n\nwhat the running commands printed:\n${holderLogs()}`);
  }

  const all = outputs.join('\n') + '\n' + [...terminals.values()].map((t) => t.stderr).join('\n');
  // Step 3: the POST was answered with the actuation.
  expect(all).toMatch(/"deviceId":"lamp-1","seq":1,"status":"(sent|queued)"/);
  // Step 6: stream and rule created, the event taken by the simulator.
  expect(all).toMatch(/"name":"freezers"/);
  expect(all).toMatch(/"name":"too warm"/);
  expect(all).toMatch(/\{"seqs":\[1\]\}/);

  const deviceLogs = [...logs.values()].flat().map((f) => fs.readFileSync(f, 'utf8'));
  // The lamp got the actuation with the account from step 2's token, and acked it.
  const lamp = deviceLogs.find((l) => l.includes('lamp-1 authenticated'))!;
  expect(lamp).toMatch(/"accountId":"acme","deviceId":"lamp-1".*"command":"LED.v1.0"/);
  expect(lamp).toMatch(/acknowledged \S+ with 200/);
  // Step 5: posted while the lamp was stopped, it waited, and the lamp got it when it reconnected.
  expect(all).toMatch(/"deviceId":"lamp-1","seq":2,"status":"queued"/);
  expect(deviceLogs.some((l) => l !== lamp && /"seq":2,.*"deviceId":"lamp-1"/.test(l) && /acknowledged \S+ with 200/.test(l))).toBe(true);
  // The fan got the rule's actuation for the event.
  const deadline = Date.now() + 30_000;
  let fan = '';
  while (!/"command":"BOOST"/.test(fan) && Date.now() < deadline) {
    fan = fs.readFileSync([...logs.values()].flat().find((f) => fs.readFileSync(f, 'utf8').includes('fan-AC000W000000001 authenticated'))!, 'utf8');
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(fan).toMatch(/"deviceId":"fan-AC000W000000001".*"command":"BOOST","params":\[\{"name":"temp","value":"-5"\}\]/);
  // Step 4's request, again in terminal 3 (its $API and $ID), shows the actuation acked once the lamp's ack is recorded.
  let record = '';
  for (let tries = 0; tries < 50 && !record.includes('"status":"acked"'); tries++) {
    record = await terminals.get('3')!.run('curl -s "$API/v1/actuations/$ID"', 10_000);
    if (!record.includes('"status":"acked"')) await new Promise((r) => setTimeout(r, 200));
  }
  expect(record).toMatch(/"status":"acked"/);
  expect(record).toMatch(/"history":\[/);
}, 420_000);
