/**
 * Fuzzing the device protocol (fast-check) against the real server and database, beside
 * a legitimate device. First messages: wrong types in every field, unicode edge cases
 * (U+0000, lone surrogates) in every string, huge and deeply nested JSON, binary frames,
 * invalid UTF-8, and tokens cut, re-signed, with every `alg` (none, HS* keyed with the
 * public key, keys of an attacker's own), `kid`/`jku`/`jwk`/`x5u`/`crit` headers. Later
 * messages: the same on an authenticated socket, around real actuation ids and seqs.
 *
 * Properties: the server answers only the protocol's documented response codes
 * (RESPONSE_CODES, never 500 for client input) and close codes (CLOSE_CODES, never 1011);
 * no token the server should refuse is accepted, and a good one is; the server stays up;
 * the legitimate device keeps receiving its actuations and its acks are recorded.
 * Seed and run count: see fuzz-options.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { isStorableText } from '../../src/db/storable.js';
import { CLOSE_CODES, LIBRARY_CLOSE_CODES, parseDeviceMessage, RESPONSE_CODES, SUBPROTOCOL } from '../../src/gateway/protocol.js';
import { connectAuthenticated, type DeviceClient } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint, testKeyPaths } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';
import { deepJsonText, edgeJson, edgeString, runs, wrongType, fuzzTimeout } from './fuzz-options.js';

const MAX_MESSAGE_BYTES = 16_384;
const t = useTestServer({ MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES), AUTH_TIMEOUT_MS: '5000', LOG_LEVEL: 'silent' });

const RESPONSE = new Set<number>(Object.values(RESPONSE_CODES).map((c) => c.code));
const CLOSE = new Set<number>([...Object.values(CLOSE_CODES), ...Object.values(LIBRARY_CLOSE_CODES)].map((c) => c.code));
const LEGIT = 'fuzz-legit-device';

let legit: DeviceClient;
let legitClosed: { code: number; reason: string } | null = null;
beforeAll(async () => {
  legit = await connectAuthenticated(t.server.wsUrl, LEGIT, mint(LEGIT));
  void legit.closed.then((c) => (legitClosed = c));
});
afterAll(() => legit?.close());

/**
 * The legitimate device gets an actuation posted now and its ack is recorded: another
 * client's fuzzing disturbed nothing. `atAck` runs right before the legitimate ack is
 * sent (the fuzzer's frames then reach the server at the same moment: same ack batch).
 */
async function legitStillServed(atAck?: () => void): Promise<void> {
  expect(legitClosed, 'the legitimate device was closed').toBeNull();
  const res = await t.server.api(`/v1/devices/${LEGIT}/actuations`, { method: 'POST', json: { componentId: 'c', command: 'legit', params: [] } });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const message = await legit.next(5_000);
  expect(message).toMatchObject({ code: 1024, id });
  atAck?.();
  legit.send({ type: 'ack', id, statusCode: 200, reasonPhrase: 'OK' });
  const status = await eventually(
    async () => ((await (await t.server.api(`/v1/actuations/${id}`)).json()) as { status: string }).status,
    (s) => s === 'acked',
    5_000,
    5,
  );
  expect(status).toBe('acked');
}

// ---- tokens -------------------------------------------------------------------------

const ourPrivate = crypto.createPrivateKey(fs.readFileSync(testKeyPaths().privateKeyPath, 'utf8'));
const ourPublicPem = fs.readFileSync(testKeyPaths().publicKeyPath, 'utf8');
const attacker = {
  rsa: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ec256: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ec384: crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  ec521: crypto.generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  ed: crypto.generateKeyPairSync('ed25519'),
};
const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'EdDSA', 'none', 'None', 'NONE', 'rs256', ''] as const;
type Alg = (typeof ALGS)[number];

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

function sign(alg: Alg, input: string, key: 'ours' | 'attacker' | 'public-as-secret'): string {
  const data = Buffer.from(input);
  const hash = alg.endsWith('384') ? 'sha384' : alg.endsWith('512') ? 'sha512' : 'sha256';
  if (alg.startsWith('HS')) return b64url(crypto.createHmac(hash, key === 'public-as-secret' ? ourPublicPem : 'attacker-secret').update(data).digest());
  if (alg === 'RS256' || alg === 'RS384' || alg === 'RS512' || alg === 'rs256') {
    return b64url(crypto.sign(hash, data, key === 'ours' ? ourPrivate : attacker.rsa.privateKey));
  }
  if (alg.startsWith('PS')) {
    const k = key === 'ours' ? ourPrivate : attacker.rsa.privateKey;
    return b64url(crypto.sign(hash, data, { key: k, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: crypto.constants.RSA_PSS_SALTLEN_DIGEST }));
  }
  if (alg.startsWith('ES')) {
    const k = alg === 'ES256' ? attacker.ec256 : alg === 'ES384' ? attacker.ec384 : attacker.ec521;
    return b64url(crypto.sign(hash, data, { key: k.privateKey, dsaEncoding: 'ieee-p1363' }));
  }
  if (alg === 'EdDSA') return b64url(crypto.sign(null, data, attacker.ed.privateKey));
  return '';
}

interface TokenCase {
  token: unknown;
  /** accept: a good token (and a storable device id); refuse: must be refused; either: not decided by this property. */
  expect: 'accept' | 'refuse' | 'either';
  why: string;
}

const now = () => Math.floor(Date.now() / 1000);
const headerExtras = fc.record(
  {
    kid: fc.oneof(edgeString(), fc.constantFrom('../../../../dev/null', "' or 1=1 --", '0')),
    jku: fc.constantFrom('http://127.0.0.1:1/jwks.json', 'https://attacker.example/jwks', 'file:///etc/passwd'),
    x5u: fc.constantFrom('http://127.0.0.1:1/cert.pem'),
    jwk: fc.constant(attacker.rsa.publicKey.export({ format: 'jwk' })),
    typ: fc.oneof(fc.constant('JWT'), edgeString(10)),
  },
  { requiredKeys: [] },
);
const claims = (deviceId: string) =>
  fc.record(
    {
      sub: fc.oneof({ weight: 4, arbitrary: fc.constant(deviceId) }, { weight: 1, arbitrary: fc.oneof(edgeString(), wrongType) }),
      exp: fc.oneof({ weight: 4, arbitrary: fc.constant(now() + 3600) }, { weight: 1, arbitrary: fc.oneof(fc.constant(now() - 3600), fc.constant('9999999999'), wrongType) }),
      nbf: fc.oneof(fc.constant(now() - 10), fc.constant(now() + 3600)),
      accountId: fc.oneof(edgeString(), wrongType),
      accounts: fc.oneof(fc.array(fc.record({ id: fc.oneof(edgeString(), wrongType) }), { maxLength: 2 }), wrongType),
      iat: fc.oneof(fc.constant(now()), wrongType),
    },
    { requiredKeys: ['sub'] },
  );

/** Would the server be right to accept this token for `deviceId`? (the oracle) */
function verdict(alg: Alg, key: string, header: Record<string, unknown>, payload: Record<string, unknown>, deviceId: string): TokenCase['expect'] {
  if (key !== 'ours' || alg !== 'RS256') return 'refuse';
  if ('crit' in header) return 'refuse'; // RFC 7515 §4.1.11: unknown critical parameters must be refused
  if (payload.sub !== deviceId) return 'refuse';
  if (payload.iat !== undefined && typeof payload.iat !== 'number') return 'either'; // a malformed iat may be refused
  const account = typeof payload.accountId === 'string' ? payload.accountId : (payload.accounts as { id?: unknown }[] | undefined)?.[0]?.id;
  if (typeof account === 'string' && !isStorableText(account)) return 'either'; // refused, or recorded without it
  if (typeof payload.nbf === 'number' && payload.nbf > now() + 5) return 'refuse';
  if ('exp' in payload && payload.exp !== undefined) return typeof payload.exp === 'number' && payload.exp > now() + 60 ? 'accept' : 'refuse';
  return 'either'; // no exp: DEVICE_TOKEN_REQUIRE_EXP decides
}

/** A good token signed with our key for `deviceId` (RS256, exp in an hour), with extra header parameters. */
function goodToken(deviceId: string, header: Record<string, unknown> = {}, payload: Record<string, unknown> = {}): string {
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', ...header }))}.${b64url(JSON.stringify({ sub: deviceId, exp: now() + 3600, ...payload }))}`;
  return `${input}.${sign('RS256', input, 'ours')}`;
}

const tokenCase = (deviceId: string): fc.Arbitrary<TokenCase> =>
  fc.oneof(
    // A good token (the device id decides), or one with harmless extra headers.
    fc.constant<TokenCase>({ token: goodToken(deviceId), expect: 'accept', why: 'good token' }),
    headerExtras.map((extras): TokenCase => ({ token: goodToken(deviceId, extras), expect: 'accept', why: `good token with ${Object.keys(extras).join(',')}` })),
    // Our signature, but something a verifier must refuse.
    fc
      .constantFrom<[string, Record<string, unknown>, Record<string, unknown>]>(
        ['crit x-unknown', { crit: ['x-unknown'], 'x-unknown': 1 }, {}],
        ['empty crit', { crit: [] }, {}],
        ['expired', {}, { exp: now() - 3600 }],
        ['not yet valid', {}, { nbf: now() + 3600 }],
        ['exp as a string', {}, { exp: String(now() + 3600) }],
        ['another subject', {}, { sub: `${deviceId}x` }],
      )
      .map(([why, header, payload]): TokenCase => ({ token: goodToken(deviceId, header, payload), expect: 'refuse', why })),
    // Signed JWTs: every alg, our key or an attacker's, odd headers and claims.
    fc
      .record({
        alg: fc.constantFrom(...ALGS),
        key: fc.constantFrom('ours', 'ours', 'attacker', 'public-as-secret'),
        extras: headerExtras,
        crit: fc.option(fc.constantFrom(['x-unknown'], ['exp'], []), { nil: undefined }),
        payload: claims(deviceId),
      })
      .map(({ alg, key, extras, crit, payload }): TokenCase => {
        const header: Record<string, unknown> = { alg, ...extras, ...(crit === undefined ? {} : { crit, 'x-unknown': true }) };
        const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
        const token = `${input}.${sign(alg, input, key as 'ours' | 'attacker' | 'public-as-secret')}`;
        return { token, expect: verdict(alg, key, header, payload, deviceId), why: `${alg} signed with ${key}, header ${JSON.stringify(header).slice(0, 120)}` };
      }),
    // A good token, then cut, with a character changed, or with its payload swapped and the old signature kept.
    fc.record({ at: fc.nat(), mode: fc.constantFrom('cut', 'flip', 'swap', 'segments') }).map(({ at, mode }): TokenCase => {
      const good = mint(deviceId.isWellFormed() ? deviceId : 'x');
      const [h, p, s] = good.split('.') as [string, string, string];
      const i = at % good.length;
      if (mode === 'cut') return { token: good.slice(0, i), expect: 'refuse', why: `cut at ${i}` };
      if (mode === 'flip') {
        const c = good[i] === 'A' ? 'B' : 'A';
        const flipped = good.slice(0, i) + c + good.slice(i + 1);
        // The signature's last base64url character has unused bits: changing it may change nothing.
        return { token: flipped, expect: flipped === good || i === good.length - 1 ? 'either' : 'refuse', why: `character ${i} changed` };
      }
      if (mode === 'swap') return { token: `${h}.${b64url(JSON.stringify({ sub: deviceId, exp: now() + 99999, accountId: 'admin' }))}.${s}`, expect: 'refuse', why: 'payload swapped' };
      return { token: [h, p, s, s].slice(0, 1 + (at % 4)).join('.'), expect: at % 4 === 2 ? 'accept' : 'refuse', why: `${1 + (at % 4)} segments` };
    }),
    // Not a JWT at all.
    fc.oneof(edgeString(200), wrongType, fc.constant('x'.repeat(16 * 1024 + 1))).map((token): TokenCase => ({ token, expect: 'refuse', why: 'garbage' })),
  );

// ---- frames ---------------------------------------------------------------------------

type Frame = { text: string } | { binary: Buffer } | { invalidUtf8: Buffer } | { ack: Record<string, unknown> };

/** A reference to the n-th actuation the fuzzed device received (its id, or its seq for upTo), resolved when known. */
class Ref {
  constructor(readonly n: number) {}
  toString() {
    return `Ref(${this.n})`;
  }
}

function jsonFrame(value: Record<string, unknown> | unknown): Frame {
  if (value && typeof value === 'object' && Object.values(value).some((v) => v instanceof Ref)) return { ack: value as Record<string, unknown> };
  return { text: JSON.stringify(value) ?? 'undefined' };
}

function resolveRefs(frame: Frame, ids: string[], seqs: number[]): Frame {
  if (!('ack' in frame)) return frame;
  const out = Object.fromEntries(
    Object.entries(frame.ack).map(([k, v]) => [k, v instanceof Ref ? (k === 'upTo' ? seqs[v.n % seqs.length]! + (v.n % 3) - 1 : ids[v.n % ids.length]) : v]),
  );
  return { text: JSON.stringify(out) };
}

/** Frames of every odd kind, for any point of a connection. */
const oddFrame: fc.Arbitrary<Frame> = fc.oneof(
  edgeJson.map(jsonFrame),
  fc.dictionary(fc.constantFrom('type', 'id', 'upTo', 'statusCode', 'reasonPhrase', 'deviceId', 'deviceToken', '__proto__', 'constructor'), fc.oneof(edgeJson, wrongType)).map(jsonFrame),
  fc.string({ maxLength: 50 }).map((text) => ({ text })),
  deepJsonText.map((text) => ({ text })),
  fc.integer({ min: MAX_MESSAGE_BYTES - 50, max: MAX_MESSAGE_BYTES * 4 }).map((n) => jsonFrame({ type: 'ping', pad: 'x'.repeat(n) })),
  fc.uint8Array({ maxLength: 64 }).map((b) => ({ binary: Buffer.from(b) })),
  fc.constantFrom(Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff, 0xfe, 0x7b])).map((b) => ({ invalidUtf8: b })),
  fc.constant(jsonFrame({ type: 'ping' })),
);

interface Exchange {
  messages: unknown[];
  close: { code: number; reason: string } | null;
}

/**
 * Opens a socket, sends `frames` and then a `ping`; resolves once the server closed the
 * socket or answered that last ping (so every earlier frame was handled), within 10 s.
 */
function exchange(frames: Frame[], authFirst?: { deviceId: string; token: string }): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(t.server.wsUrl, SUBPROTOCOL);
    const messages: unknown[] = [];
    let pongs = 0;
    let expectedPongs = Infinity;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close and no answer to the final ping within 10 s; got ${JSON.stringify(messages).slice(0, 500)}`));
    }, 10_000);
    const done = (close: Exchange['close']) => {
      clearTimeout(timer);
      resolve({ messages, close });
      if (ws.readyState === WebSocket.OPEN) ws.close();
    };
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => done({ code, reason: reason.toString() }));
    ws.on('message', (data, isBinary) => {
      let parsed: unknown;
      try {
        parsed = isBinary ? { binary: true } : JSON.parse(String(data));
      } catch {
        parsed = { notJson: String(data).slice(0, 200) };
      }
      messages.push(parsed);
      if ((parsed as { code?: number }).code === RESPONSE_CODES.PONG.code && ++pongs >= expectedPongs) done(null);
    });
    ws.on('open', () => {
      let pings = 0;
      const all: Frame[] = authFirst ? [jsonFrame({ type: 'device', ...authFirst }), ...frames] : frames;
      for (const frame of all) {
        if ('text' in frame) {
          if (isPing(frame.text)) pings++;
          ws.send(frame.text);
        } else if ('binary' in frame) ws.send(frame.binary, { binary: true });
        else if ('invalidUtf8' in frame) ws.send(frame.invalidUtf8, { binary: false });
      }
      ws.send('{"type":"ping"}');
      expectedPongs = pings + 1;
      if (pongs >= expectedPongs) done(null);
    });
  });
}

/** Only documented codes, never a server error; returns a description of what is wrong (or null). */
function undocumented(ex: Exchange, allowed: Set<number>): string | null {
  for (const m of ex.messages) {
    const code = (m as { code?: unknown }).code;
    if (typeof code !== 'number' || !allowed.has(code)) return `message ${JSON.stringify(m).slice(0, 200)}`;
  }
  if (ex.close && (!CLOSE.has(ex.close.code) || ex.close.code === CLOSE_CODES.INTERNAL_ERROR.code)) return `close ${ex.close.code} ${ex.close.reason}`;
  return null;
}

/** Frames the server answers with PONG (counted so that an exchange ends after the answer to its final ping). */
const isPing = (text: string) => Buffer.byteLength(text) <= MAX_MESSAGE_BYTES && parseDeviceMessage(text)?.type === 'ping';

const storableDeviceId = (id: unknown) => typeof id === 'string' && id.length >= 1 && id.length <= 256 && isStorableText(id);

let counter = 0;

describe('device protocol fuzzing', () => {
  it('answers any first message with documented codes only, and accepts exactly the good tokens', async () => {
    const firstAllowed = new Set([...RESPONSE].filter((c) => c !== RESPONSE_CODES.SERVER_ERROR.code && c !== RESPONSE_CODES.ACTUATION.code));
    const deviceIdArb = fc.oneof({ weight: 3, arbitrary: fc.nat().map((n) => `fz-first-${n}`) }, { weight: 3, arbitrary: edgeString(60) }, { weight: 1, arbitrary: wrongType });
    const firstCase = deviceIdArb.chain((deviceId) =>
      fc.record({
        deviceId: fc.constant(deviceId),
        token: tokenCase(typeof deviceId === 'string' ? deviceId : 'x'),
        type: fc.oneof({ weight: 8, arbitrary: fc.constant('device') }, { weight: 1, arbitrary: fc.oneof(edgeString(10), wrongType) }),
        extra: fc.option(fc.dictionary(edgeString(8), edgeJson, { maxKeys: 2 }), { nil: undefined }),
        after: fc.array(oddFrame, { maxLength: 2 }),
        raw: fc.option(oddFrame, { freq: 6, nil: undefined }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(firstCase, async (c) => {
        fc.pre(c.deviceId !== LEGIT);
        const first = c.raw ?? jsonFrame({ ...c.extra, type: c.type, deviceId: c.deviceId, deviceToken: c.token.token });
        const ex = await exchange([first, ...c.after]);
        const problem = undocumented(ex, firstAllowed);
        if (problem) throw new Error(`undocumented answer: ${problem}`);
        const accepted = ex.messages.some((m) => (m as { code?: number }).code === RESPONSE_CODES.OK.code);
        if (c.raw !== undefined) {
          if (accepted) throw new Error('a raw frame was accepted as authentication');
          return;
        }
        const wellFormed = c.type === 'device' && typeof c.token.token === 'string' && c.token.token.length >= 1 && c.token.token.length <= 16 * 1024;
        const should = !wellFormed || !storableDeviceId(c.deviceId) ? 'refuse' : c.token.expect;
        if (should === 'refuse' && accepted) throw new Error(`accepted a token it must refuse (${c.token.why})`);
        // (Frames after it may close the socket before the authentication's answer: then "accept" is not checked.)
        if (should === 'accept' && c.after.length === 0 && !accepted) throw new Error(`refused a good token (${c.token.why}): ${JSON.stringify(ex)}`);
      }),
      runs(700),
    );
    await legitStillServed();
  }, fuzzTimeout(120_000));

  it('answers any later message of an authenticated device with documented codes, while another device is served', async () => {
    const allowed = new Set([...RESPONSE].filter((c) => c !== RESPONSE_CODES.SERVER_ERROR.code));
    const ackFrame = fc.oneof(
        fc
          .record(
            {
              id: fc.oneof(fc.nat().map((n) => new Ref(n)), fc.uuid(), edgeString(), wrongType),
              statusCode: fc.oneof(fc.integer({ min: 100, max: 999 }), fc.integer(), fc.double(), wrongType),
              reasonPhrase: fc.oneof(edgeString(60), fc.constant('x'.repeat(2_000)), wrongType),
            },
            { requiredKeys: ['id'] },
          )
          .map((a) => jsonFrame({ type: 'ack', ...a })),
        fc.oneof(fc.nat().map((n) => new Ref(n)), fc.integer(), fc.double(), fc.constantFrom(0, -1, 2 ** 53, 2 ** 63, 1e308), wrongType).map((upTo) => jsonFrame({ type: 'ack', upTo })),
        // Well-formed acks of its own actuations whose text the database would refuse.
        fc
          .record({ n: fc.nat(), statusCode: fc.constantFrom(200, 500), reasonPhrase: fc.constantFrom('bad\u0000', '\ud800', 'ok\udfffx', '\u0000') })
          .map(({ n, ...rest }) => jsonFrame({ type: 'ack', id: new Ref(n), ...rest })),
      );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 }), fc.array(fc.oneof(ackFrame, ackFrame, oddFrame), { minLength: 1, maxLength: 8 }), async (posts, templates) => {
        const deviceId = `fz-later-${counter++}`;
        const ws = await exchangeAuthenticated(deviceId, posts);
        const frames = templates.map((f) => resolveRefs(f, ws.ids, ws.seqs));
        let running!: Promise<Exchange>;
        await legitStillServed(() => (running = ws.run(frames)));
        const ex = await running;
        const problem = undocumented(ex, allowed);
        if (problem) throw new Error(`undocumented answer: ${problem}`);
      }),
      runs(80),
    );
    await legitStillServed();
    expect((await fetch(`${t.server.httpUrl}/healthz`)).status).toBe(200);
  }, fuzzTimeout(120_000));
});

/** An authenticated raw socket with `posts` actuations received; `run` sends frames as `exchange` does. */
async function exchangeAuthenticated(deviceId: string, posts: number): Promise<{ ids: string[]; seqs: number[]; run(frames: Frame[]): Promise<Exchange> }> {
  const ws = new WebSocket(t.server.wsUrl, SUBPROTOCOL);
  const inbox: Record<string, unknown>[] = [];
  ws.on('message', (d) => inbox.push(JSON.parse(String(d)) as Record<string, unknown>));
  ws.on('error', () => undefined);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.send(JSON.stringify({ type: 'device', deviceId, deviceToken: mint(deviceId) }));
  await eventually(() => inbox.length, (n) => n >= 1, 5_000, 2);
  expect(inbox[0]).toMatchObject({ code: 200 });
  for (let i = 0; i < posts; i++) {
    const res = await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: { componentId: 'c', command: 'fuzz', params: [{ name: 'n', value: i }] } });
    expect(res.status).toBe(202);
  }
  await eventually(() => inbox.length, (n) => n >= 1 + posts, 5_000, 2);
  const actuations = inbox.slice(1) as { id: string; seq: number }[];
  return {
    ids: actuations.map((a) => a.id),
    seqs: actuations.map((a) => a.seq),
    run(frames) {
      return new Promise((resolve, reject) => {
        const messages: unknown[] = [];
        let pings = frames.filter((f) => 'text' in f && isPing(f.text)).length + 1;
        const timer = setTimeout(() => {
          ws.terminate();
          reject(new Error(`no close and no answer to the final ping within 10 s; got ${JSON.stringify(messages).slice(0, 500)}`));
        }, 10_000);
        const done = (close: Exchange['close']) => {
          clearTimeout(timer);
          resolve({ messages, close });
          if (ws.readyState === WebSocket.OPEN) ws.close();
        };
        ws.removeAllListeners('message');
        ws.on('message', (data) => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(String(data));
          } catch {
            parsed = { notJson: String(data).slice(0, 200) };
          }
          messages.push(parsed);
          if ((parsed as { code?: number }).code === RESPONSE_CODES.PONG.code && --pings === 0) done(null);
        });
        ws.on('close', (code, reason) => done({ code, reason: reason.toString() }));
        if (ws.readyState !== WebSocket.OPEN) return done({ code: -1, reason: 'closed before the frames were sent' });
        for (const frame of frames) {
          if ('text' in frame) ws.send(frame.text);
          else if ('binary' in frame) ws.send(frame.binary, { binary: true });
          else if ('invalidUtf8' in frame) ws.send(frame.invalidUtf8, { binary: false });
        }
        ws.send('{"type":"ping"}');
      });
    },
  };
}
