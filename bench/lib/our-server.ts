/**
 * Our server as the actuations and dss benches run it: the bench build
 * (`node dist/main.js`, NODE_ENV=production) on 127.0.0.1 with a given database,
 * a fresh RS256 key pair's public half, generated API credentials, LOG_LEVEL=warn
 * and no heartbeat pings during the run; the same environment as `connect`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../../src/db/embedded-postgres.js';
import { spawnServer, waitForPort, type ServerProcess } from './processes.js';

export interface BenchKeys {
  publicKeyPath: string;
  privateKeyPem: string;
}

export async function makeKeys(tmp: string): Promise<BenchKeys> {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const dir = await fs.mkdtemp(path.join(tmp, 'keys-'));
  const publicKeyPath = path.join(dir, 'public.pem');
  await fs.writeFile(publicKeyPath, publicKey);
  return { publicKeyPath, privateKeyPem: privateKey };
}

export interface RunningServer {
  server: ServerProcess;
  port: number;
  origin: string;
  /** HTTP Basic header for the REST API (sent to the bare servers too, which ignore it). */
  authorization: string;
  /** REST call with JSON in and out, bounded in time. */
  api(method: string, pathname: string, body?: unknown): Promise<{ status: number; json: unknown }>;
}

const PASSWORD = crypto.randomBytes(18).toString('base64url');
const AUTHORIZATION = `Basic ${Buffer.from(`bench:${PASSWORD}`).toString('base64')}`;

export async function startServer(options: {
  kind: 'ours' | 'bare';
  script: string;
  databaseUrl?: string;
  keys?: BenchKeys;
  tmp: string;
  instanceId: string;
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
}): Promise<RunningServer> {
  const port = await freePort();
  const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port) };
  const env: NodeJS.ProcessEnv =
    options.kind === 'ours'
      ? {
          ...baseEnv,
          NODE_ENV: 'production',
          HOST: '127.0.0.1',
          DATABASE_URL: options.databaseUrl,
          DATA_DIR: path.join(options.tmp, 'data'),
          DEVICE_PUBLIC_KEY_PATH: options.keys!.publicKeyPath,
          API_USERNAME: 'bench',
          API_PASSWORD: PASSWORD,
          INSTANCE_ID: options.instanceId,
          LOG_LEVEL: 'warn',
          HEARTBEAT_INTERVAL_MS: '3600000',
          ...options.env,
        }
      : { ...baseEnv, ...options.env };
  const server = spawnServer(options.script, options.nodeArgs ?? [], env, options.tmp);
  await waitForPort(port, server, 60_000);
  const origin = `http://127.0.0.1:${port}`;
  return {
    server,
    port,
    origin,
    authorization: AUTHORIZATION,
    async api(method, pathname, body) {
      const res = await fetch(`${origin}${pathname}`, {
        method,
        headers: { authorization: AUTHORIZATION, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      let json: unknown = text;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, json };
    },
  };
}
