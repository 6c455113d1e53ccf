/**
 * Secrets never reach the logs: the real server logging at trace into a captured
 * stream while a device authenticates with a token, bad tokens are refused, and REST
 * calls carry HTTP Basic credentials (right and wrong) and a bearer token.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintDeviceToken } from '../../src/gateway/device-token.js';
import { ApiError } from '../../src/http/errors.js';
import { makeLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { captureLog } from '../helpers/log-capture.js';
import { mint } from '../helpers/keys.js';
import { TEST_CREDENTIALS, startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;
const { sink, lines, text: logText } = captureLog();

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { LOG_LEVEL: 'trace' }, { logDestination: sink });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

describe('logs', () => {
  it('never contain a device token, a password or an Authorization header value', async () => {
    const secrets: Record<string, string> = {};

    // A device authenticates with a real token, pings, and leaves.
    const token = mint('log-dev', { accountId: 'acc-log' });
    secrets.token = token;
    const device = await connectAuthenticated(server.wsUrl, 'log-dev', token);
    device.send({ type: 'ping' });
    expect((await device.next()).code).toBe(202);

    // Bad tokens: signed by another key, a valid token presented for another device, garbage.
    const otherKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    secrets.foreignToken = mintDeviceToken(otherKey, 'log-bad-1');
    secrets.garbageToken = `garbage-${crypto.randomBytes(16).toString('hex')}`;
    for (const [deviceId, deviceToken] of [
      ['log-bad-1', secrets.foreignToken],
      ['log-bad-2', token],
      ['log-bad-3', secrets.garbageToken],
    ] as const) {
      const bad = await connectDevice(server.wsUrl);
      bad.send({ type: 'device', deviceId, deviceToken });
      expect(await bad.next()).toEqual({ code: 401, content: 'Invalid device token for device' });
      await bad.closed;
    }
    // A malformed first message that carries a token: refused as wrong format, its text not logged.
    secrets.malformedToken = mint('log-bad-4');
    const malformed = await connectDevice(server.wsUrl);
    malformed.sendRaw(`{"type":"device","deviceId":"log-bad-4","deviceToken":"${secrets.malformedToken}"`);
    expect((await malformed.next()).code).toBe(401);
    await malformed.closed;

    // REST with the right credentials, the wrong password, and a bearer token.
    const basic = `Basic ${Buffer.from(`${TEST_CREDENTIALS.username}:${TEST_CREDENTIALS.password}`).toString('base64')}`;
    secrets.password = TEST_CREDENTIALS.password;
    secrets.basic = basic;
    expect((await server.api('/v1/devices/log-dev')).status).toBe(200);
    secrets.wrongPassword = `wrong-${crypto.randomBytes(8).toString('hex')}`;
    secrets.wrongBasic = `Basic ${Buffer.from(`${TEST_CREDENTIALS.username}:${secrets.wrongPassword}`).toString('base64')}`;
    expect((await server.api('/v1/devices/log-dev', { headers: { authorization: secrets.wrongBasic } })).status).toBe(401);
    secrets.bearer = `Bearer ${token}`;
    expect((await server.api('/v1/devices', { headers: { authorization: secrets.bearer } })).status).toBe(401);

    device.close();
    await device.closed;
    await eventually(() => logText(), (t) => t.includes('"deviceId":"log-dev"') && /device: disconnected/.test(t));

    // The capture really holds what happened, so the absence below means something.
    const text = logText();
    for (const expected of ['device: authenticated', 'device: invalid token', 'device: disconnected', '"url":"/v1/devices/log-dev"', '"statusCode":401']) {
      expect(text, expected).toContain(expected);
    }
    // Request lines name the method, URL and status, never the headers.
    expect(text).toContain('"msg":"request completed"');
    expect(text).not.toContain('"headers"');

    for (const [name, secret] of Object.entries(secrets)) {
      expect(text.includes(secret), `${name} appears in the logs`).toBe(false);
      // Nor a recognisable part of it: a JWT's signature, or the base64 credentials without the scheme.
      const tail = secret.split(/[.\s]/).at(-1)!;
      if (tail.length >= 16) expect(text.includes(tail), `part of ${name} appears in the logs`).toBe(false);
    }
    expect(lines.every((line) => JSON.parse(line))).toBe(true);
  });

  it('never contain a parameter value through a PostgreSQL error, and keep what explains the error', async () => {
    // Real errors from the real database, each carrying a secret-looking value where pg puts context.
    const secret = `hunter2-${crypto.randomBytes(8).toString('hex')}`;
    await db.pool.query('create table if not exists log_probe (k text primary key)');
    await db.pool.query('insert into log_probe (k) values ($1) on conflict do nothing', [secret]);
    const provoke = async (sql: string, params: unknown[]) => {
      try {
        await db.pool.query(sql, params);
      } catch (err) {
        return err as Error & Record<string, unknown>;
      }
      throw new Error(`expected ${sql} to fail`);
    };
    const errors = {
      // `where`: "JSON data, line 1: {"password":"hunter2-…"
      jsonNul: await provoke('select $1::jsonb', [`{"password":"${secret}\\u0000"}`]),
      // `where` as well: a bad token inside the JSON text
      jsonSyntax: await provoke('select $1::jsonb', [`{"password": ${secret}}`]),
      // the message quotes the input: invalid input syntax for type uuid: "hunter2-…"
      uuid: await provoke('select $1::uuid', [secret]),
      // `detail`: Key (k)=(hunter2-…) already exists.
      unique: await provoke('insert into log_probe (k) values ($1)', [secret]),
    };
    // The probes carry the secret where the serializer must not look, so its absence means something.
    expect(String(errors.jsonNul.where)).toContain(secret);
    expect(`${String(errors.jsonSyntax.where)} ${String(errors.jsonSyntax.detail)}`).toContain('hunter2');
    expect(errors.uuid.message).toContain(secret);
    expect(String(errors.unique.detail)).toContain(secret);

    const { sink: capture, lines: captured } = captureLog();
    const log = makeLogger({ level: 'trace' }, capture);
    for (const [name, err] of Object.entries(errors)) {
      log.error({ err }, `probe ${name}`);
      // As the REST error handler logs it: an ApiError whose cause is the database error.
      log.error({ err: new ApiError('INTERNAL', undefined, { cause: err }) }, `probe ${name} wrapped`);
    }
    await new Promise((r) => setImmediate(r));
    expect(captured).toHaveLength(8);
    const text = captured.join('\n');
    expect(text.includes(secret), 'the secret appears in the log').toBe(false);
    expect(text.includes('hunter2'), 'part of the secret appears in the log').toBe(false);
    // What explains the error stays: code, severity, routine, the message (its quoted input redacted).
    const entries = captured.map((line) => JSON.parse(line) as { msg: string; err: Record<string, unknown> & { cause?: Record<string, unknown> } });
    const unique = entries.find((e) => e.msg === 'probe unique')!.err;
    expect(unique).toMatchObject({ code: '23505', severity: 'ERROR', routine: expect.any(String), constraint: 'log_probe_pkey', table: 'log_probe' });
    expect(unique.message).toMatch(/duplicate key value violates unique constraint/);
    expect(entries.find((e) => e.msg === 'probe uuid')!.err.message).toBe('invalid input syntax for type uuid: "[redacted]"');
    const wrapped = entries.find((e) => e.msg === 'probe unique wrapped')!.err;
    expect(wrapped).toMatchObject({ type: 'ApiError', code: 'INTERNAL', cause: { code: '23505', severity: 'ERROR' } });
    for (const entry of entries) {
      const fields = [entry.err, entry.err.cause].filter(Boolean) as Record<string, unknown>[];
      for (const f of fields) for (const key of ['detail', 'where', 'hint', 'internalQuery', 'client']) expect(f, `${entry.msg}: ${key}`).not.toHaveProperty(key);
    }
  });

  it('never contain the password of a stream URL', async () => {
    const password = `url-pass-${crypto.randomBytes(8).toString('hex')}`;
    const streamKey = `key-${crypto.randomBytes(12).toString('hex')}`;
    // Port 1 refuses: the stream client connects, fails and logs its endpoint, over and over.
    const res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'log-url', url: `ws://dss:${password}@127.0.0.1:1/stream`, streamKey } });
    expect(res.status).toBe(201);
    expect(await res.text()).not.toContain(password);
    const seen = await eventually(() => logText(), (t) => t.includes('dss: stream socket error') || t.includes('dss: cannot open the stream URL'), 15_000);
    expect(seen).toMatch(/dss: stream socket error|dss: cannot open the stream URL/);
    expect(seen).toContain('127.0.0.1:1');
    expect(seen.includes(password), 'the URL password appears in the logs').toBe(false);
    expect(seen.includes(streamKey), 'the stream key appears in the logs').toBe(false);
  });
});
