/**
 * What every server bench starts with, in parallel where it can: a temp dir, an optional
 * CPU-profile dir, the database, the server build and a device-token key pair; then one
 * device-client process with a real token minted for each device.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildForBench, type BenchBuild } from './build.js';
import { settled } from './cli.js';
import { startBenchDatabase, type BenchDatabaseServer } from './database.js';
import { request } from './ipc.js';
import { makeKeys, type BenchKeys } from './our-server.js';
import { forkClient, onCleanup } from './processes.js';

export interface BenchRun {
  tmp: string;
  profDir: string | undefined;
  database: BenchDatabaseServer;
  build: BenchBuild;
  keys: BenchKeys;
  deviceClient: ChildProcess;
  deviceIds: string[];
}

export async function prepareBenchRun(options: {
  root: string;
  deviceScript: string;
  devices: number;
  fsync: boolean;
  statementStats?: boolean;
  /** The change feed's bench: commit timestamps and function call counts (see database.ts). */
  feedStats?: boolean;
  cpuProf: boolean;
  log(message: string): void;
}): Promise<BenchRun> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-'));
  onCleanup(() => fs.rm(tmp, { recursive: true, force: true }));
  const profDir = options.cpuProf ? await fs.mkdtemp(path.join(os.tmpdir(), 'iotws-bench-prof-')) : undefined;
  const [database, build, keys] = settled(
    await Promise.allSettled([startBenchDatabase({ fsync: options.fsync, statementStats: options.statementStats, feedStats: options.feedStats }), buildForBench(options.root), makeKeys(tmp)] as const),
  );
  options.log(`database: ${database.description}; server built from src/ (tsc -p tsconfig.build.json)`);

  const deviceClient = forkClient(options.deviceScript);
  const deviceIds = Array.from({ length: options.devices }, (_, i) => `bench-device-${i}`);
  await request(deviceClient, { op: 'mint', privateKeyPem: keys.privateKeyPem, ids: deviceIds, warmupIds: [], accountId: 'bench-account' }, 'minted', 600_000);
  return { tmp, profDir, database, build, keys, deviceClient, deviceIds };
}
