#!/usr/bin/env node
/**
 * npm run -s keys -- create --name <name> --scopes <s1,s2> [--accounts <a1,a2>] [--expires-in-days N] [--rate-limit <per second>[/<burst>]] [--json]
 *                    list [--json]
 *                    revoke <id> [--json]
 * Manages API keys. With a database URL (DATABASE_URL, or the bound PostgreSQL service
 * in Cloud Foundry) it works on the database directly, applying the migrations first,
 * so it works before the server's first start too. Without one (the embedded
 * database, which only the running server can reach) it calls the running server's
 * REST API (`--url`, default http://127.0.0.1:$PORT) as the bootstrap administrator
 * (API_USERNAME/API_PASSWORD, or the credentials generated in DATA_DIR).
 * Exit codes: 0 done; 64 bad arguments; 1 anything else (unknown key, database or server unreachable).
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig, type Config } from '../config/config.js';
import { migrate } from '../db/migrate.js';
import { makePool } from '../db/pool.js';
import * as keys from '../keys/keys-sql.js';
import { apiKeyCreateBody, apiKeyIdParam, MAX_LISTED_KEYS, type ApiKeyCreateBody } from '../keys/schemas.js';
import { GLOBAL_SCOPES, SCOPES } from '../keys/scopes.js';
import { makeLogger } from '../logger.js';
import { numberOption, parseCli, runCli } from './args.js';

const usage = `usage: npm run -s keys -- create --name <name> --scopes <scope,scope> [--accounts <account,account>] [--expires-in-days <N>] [--rate-limit <per second>[/<burst>]] [--json]
       npm run -s keys -- list [--json]
       npm run -s keys -- revoke <id> [--json]
       (scopes: ${SCOPES.join(', ')}; --accounts limits the key to those accounts' devices, and then excludes ${GLOBAL_SCOPES.join(', ')};
        without DATABASE_URL: [--url http://127.0.0.1:$PORT] of the running server)`;

/** A key as either backend returns it (times as ISO strings, as in the REST answers). */
type KeyView = {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  accounts: string[] | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  rateLimit: { perSecond: number; burst: number } | null;
  key?: string;
};

interface KeyAdmin {
  create(input: ApiKeyCreateBody): Promise<KeyView>;
  list(): Promise<KeyView[]>;
  /** `undefined`: no such key. */
  revoke(id: string): Promise<KeyView | undefined>;
  close(): Promise<void>;
}

const asView = (record: object): KeyView => JSON.parse(JSON.stringify(record)) as KeyView;

async function databaseAdmin(config: Config, databaseUrl: string): Promise<KeyAdmin> {
  const logger = makeLogger({ level: 'warn' });
  const pool = makePool({ connectionString: databaseUrl, ssl: config.databaseSsl, max: 1, applicationName: 'iot-websocket-server keys', timeoutMs: config.databaseTimeoutMs }, logger);
  try {
    await migrate(pool, logger);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return {
    create: async (input) => asView(await keys.createKey(pool, input)),
    list: async () => (await keys.listKeys(pool, MAX_LISTED_KEYS)).map(asView),
    revoke: async (id) => {
      const key = await keys.revokeKey(pool, id);
      return key && asView(key);
    },
    close: () => pool.end(),
  };
}

function restAdmin(config: Config, url: string): KeyAdmin {
  const file = path.join(config.dataDir, 'api-credentials.json');
  const credentials = config.apiCredentials ?? (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { username: string; password: string }) : undefined);
  if (!credentials) throw new Error(`no DATABASE_URL and no administrator credentials (API_USERNAME/API_PASSWORD, or ${file}): start the server once, or set DATABASE_URL`);
  const authorization = 'Basic ' + Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
  const call = async (method: string, route: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
    let res: Response;
    try {
      res = await fetch(new URL(route, url), {
        method,
        headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new Error(`server at ${url} unreachable (${(err as Error).message}): is it running? (or set DATABASE_URL to work on the database)`);
    }
    const json = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
    if (res.status >= 400 && res.status !== 404) throw new Error(`server answered ${res.status}: ${json?.error?.message ?? 'no error message'}`);
    return { status: res.status, json };
  };
  return {
    create: async (input) => (await call('POST', '/v1/api-keys', input)).json as KeyView,
    list: async () => ((await call('GET', '/v1/api-keys')).json as { items: KeyView[] }).items,
    revoke: async (id) => {
      const { status, json } = await call('DELETE', `/v1/api-keys/${encodeURIComponent(id)}`);
      return status === 404 ? undefined : (json as KeyView);
    },
    close: async () => undefined,
  };
}

function state(key: KeyView): string {
  if (key.revokedAt) return `revoked ${key.revokedAt}`;
  if (key.expiresAt && Date.parse(key.expiresAt) <= Date.now()) return `expired ${key.expiresAt}`;
  return key.expiresAt ? `active until ${key.expiresAt}` : 'active';
}

function describe(key: KeyView): string {
  const accounts = key.accounts ? `  accounts ${key.accounts.join(',')}` : '';
  const limit = key.rateLimit ? `${key.rateLimit.perSecond}/s burst ${key.rateLimit.burst}` : 'default rate limit';
  return `${key.id}  ${key.prefix}  ${key.name}  [${key.scopes.join(',')}]  ${state(key)}  ${limit}  last used ${key.lastUsedAt ?? 'never'}${accounts}`;
}

/** `10` or `10/20`: requests per second and (optionally) the burst; range-checked by the body schema. */
function rateLimitOption(cli: { fail(message: string): never }, raw: string): { perSecond: number; burst?: number } {
  const match = /^(\d{1,9})(?:\/(\d{1,9}))?$/.exec(raw.trim());
  if (!match) return cli.fail(`--rate-limit must be <requests per second>[/<burst>], e.g. 10/20, got "${raw}"`);
  return { perSecond: Number(match[1]), ...(match[2] === undefined ? {} : { burst: Number(match[2]) }) };
}

runCli(usage, async () => {
  const cli = parseCli(usage, {
    name: { type: 'string' },
    scopes: { type: 'string' },
    accounts: { type: 'string' },
    'expires-in-days': { type: 'string' },
    'rate-limit': { type: 'string' },
    url: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  const { values, positionals } = cli;
  const [command, ...rest] = positionals;
  const print = (text: string, value: unknown) => process.stdout.write(values.json ? `${JSON.stringify(value)}\n` : `${text}\n`);

  let run: (admin: KeyAdmin) => Promise<void>;
  if (command === 'create') {
    if (rest.length > 0) cli.fail(`create takes no positional arguments, got "${rest.join(' ')}"`);
    if (values.name === undefined) cli.fail('create needs --name');
    if (values.scopes === undefined) cli.fail('create needs --scopes');
    const input = {
      name: values.name as string,
      scopes: (values.scopes as string).split(',').map((s) => s.trim()).filter(Boolean),
      ...(values.accounts === undefined ? {} : { accounts: [...new Set((values.accounts as string).split(',').map((a) => a.trim()).filter(Boolean))] }),
      ...(values['expires-in-days'] === undefined ? {} : { expiresInDays: numberOption(cli, 'expires-in-days', values['expires-in-days'] as string, { min: 1, integer: true, what: 'a whole number of days, 1 or more' }) }),
      ...(values['rate-limit'] === undefined ? {} : { rateLimit: rateLimitOption(cli, values['rate-limit'] as string) }),
    };
    const checked = apiKeyCreateBody.safeParse(input);
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      const scopesMessage = issue.code === 'custom' ? issue.message : `each must be one of ${SCOPES.join(', ')}`;
      const option = issue.path[0] === 'expiresInDays' ? 'expires-in-days' : issue.path[0] === 'rateLimit' ? 'rate-limit' : String(issue.path[0]);
      cli.fail(`--${option}: ${issue.path[0] === 'scopes' ? scopesMessage : issue.message}`);
    }
    run = async (admin) => {
      const key = await admin.create(checked.data!);
      print(`${describe(key)}\n\n${key.key}\n\nThis is the only time the key is shown: store it now (it is kept only as a hash).`, key);
    };
  } else if (command === 'list') {
    if (rest.length > 0) cli.fail(`list takes no positional arguments, got "${rest.join(' ')}"`);
    run = async (admin) => {
      const items = await admin.list();
      print(items.length === 0 ? 'no API keys' : items.map(describe).join('\n'), { items });
    };
  } else if (command === 'revoke') {
    if (rest.length !== 1) cli.fail('revoke needs exactly one key id');
    if (!apiKeyIdParam.safeParse({ id: rest[0] }).success) cli.fail(`"${rest[0]}" is not a key id (a UUID, as \`list\` shows)`);
    run = async (admin) => {
      const key = await admin.revoke(rest[0]!);
      if (!key) throw new Error(`no API key ${rest[0]}`);
      print(describe(key), key);
    };
  } else {
    return cli.fail(command === undefined ? 'give a command: create, list or revoke' : `unknown command "${command}"`);
  }

  const config = loadConfig();
  const admin = config.databaseUrl ? await databaseAdmin(config, config.databaseUrl) : restAdmin(config, (values.url as string | undefined) ?? `http://127.0.0.1:${config.port}`);
  try {
    await run(admin);
  } finally {
    await admin.close();
  }
});
