import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { TOKEN_REFUSAL_REASONS, makeDeviceTokenChecker, makeDeviceTokenVerifier, mintDeviceToken } from '../../src/gateway/device-token.js';

function rsaKeyPair() {
  return crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

const keys = rsaKeyPair();
const otherKeys = rsaKeyPair();
const verify = makeDeviceTokenVerifier(keys.publicKey, ['RS256']);
const now = () => Math.floor(Date.now() / 1000);

function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** A JWT put together by hand, for tokens jsonwebtoken refuses to sign. */
function handMadeToken(header: object, payload: object, sign: (signingInput: string) => string): string {
  const signingInput = `${base64url(header)}.${base64url(payload)}`;
  return `${signingInput}.${sign(signingInput)}`;
}

describe('makeDeviceTokenVerifier', () => {
  it('accepts a valid RS256 token whose sub is the device id', () => {
    expect(verify('dev-1', mintDeviceToken(keys.privateKey, 'dev-1'))).toEqual({ deviceId: 'dev-1', accountId: null });
  });

  it('records the accountId claim', () => {
    expect(verify('dev-1', mintDeviceToken(keys.privateKey, 'dev-1', { accountId: 'acc-7' }))).toEqual({ deviceId: 'dev-1', accountId: 'acc-7' });
  });

  it('falls back to accounts[0].id, and prefers accountId when both are present', () => {
    const fromList = jwt.sign({ accounts: [{ id: 'acc-first', role: 'admin' }, { id: 'acc-second' }] }, keys.privateKey, {
      algorithm: 'RS256',
      subject: 'dev-1',
      expiresIn: '1h',
    });
    expect(verify('dev-1', fromList)).toEqual({ deviceId: 'dev-1', accountId: 'acc-first' });

    const both = jwt.sign({ accountId: 'acc-claim', accounts: [{ id: 'acc-first' }] }, keys.privateKey, {
      algorithm: 'RS256',
      subject: 'dev-1',
      expiresIn: '1h',
    });
    expect(verify('dev-1', both)?.accountId).toBe('acc-claim');
  });

  it('records no account when the claims carry none that is a string', () => {
    const odd = jwt.sign({ accountId: 42, accounts: [{ id: 7 }] }, keys.privateKey, { algorithm: 'RS256', subject: 'dev-1', expiresIn: '1h' });
    expect(verify('dev-1', odd)).toEqual({ deviceId: 'dev-1', accountId: null });
  });

  it('refuses an expired token (beyond the clock tolerance)', () => {
    const expired = jwt.sign({ sub: 'dev-1', iat: now() - 3600, exp: now() - 60 }, keys.privateKey, { algorithm: 'RS256' });
    expect(verify('dev-1', expired)).toBeNull();
  });

  it('refuses a token that is not yet valid (nbf in the future)', () => {
    const early = jwt.sign({ sub: 'dev-1', nbf: now() + 600, exp: now() + 3600 }, keys.privateKey, { algorithm: 'RS256' });
    expect(verify('dev-1', early)).toBeNull();
    // The same token with nbf in the past is fine: the refusal above is about nbf.
    const due = jwt.sign({ sub: 'dev-1', nbf: now() - 600, exp: now() + 3600 }, keys.privateKey, { algorithm: 'RS256' });
    expect(verify('dev-1', due)).not.toBeNull();
  });

  it('refuses a token for another device, and one without sub', () => {
    expect(verify('dev-1', mintDeviceToken(keys.privateKey, 'dev-2'))).toBeNull();
    const noSub = jwt.sign({ type: 'device' }, keys.privateKey, { algorithm: 'RS256', expiresIn: '1h' });
    expect(verify('dev-1', noSub)).toBeNull();
  });

  it('refuses a token signed with another key', () => {
    expect(verify('dev-1', mintDeviceToken(otherKeys.privateKey, 'dev-1'))).toBeNull();
  });

  it('refuses alg "none"', () => {
    const unsigned = handMadeToken({ alg: 'none', typ: 'JWT' }, { sub: 'dev-1', exp: now() + 3600 }, () => '');
    expect(jwt.decode(unsigned, { complete: true })?.header.alg).toBe('none');
    expect(verify('dev-1', unsigned)).toBeNull();
    // Variants some libraries got wrong: a different case, and a leftover signature.
    expect(verify('dev-1', handMadeToken({ alg: 'None' }, { sub: 'dev-1', exp: now() + 3600 }, () => ''))).toBeNull();
    const withSignature = mintDeviceToken(keys.privateKey, 'dev-1').split('.');
    const noneHeader = base64url({ alg: 'none', typ: 'JWT' });
    expect(verify('dev-1', [noneHeader, withSignature[1], withSignature[2]].join('.'))).toBeNull();
  });

  it('refuses HS256 signed with the public key PEM as the HMAC secret', () => {
    const forged = handMadeToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'dev-1', exp: now() + 3600 }, (input) =>
      crypto.createHmac('sha256', keys.publicKey).update(input).digest('base64url'),
    );
    // The forgery is a correct HS256 token for that secret: only the pinned algorithms stop it.
    const asSecret = crypto.createSecretKey(Buffer.from(keys.publicKey));
    expect(jwt.verify(forged, asSecret, { algorithms: ['HS256'] })).toMatchObject({ sub: 'dev-1' });
    expect(verify('dev-1', forged)).toBeNull();
    // A verifier that allows several asymmetric algorithms still refuses it.
    expect(makeDeviceTokenVerifier(keys.publicKey, ['RS256', 'RS512', 'ES256'])('dev-1', forged)).toBeNull();
  });

  it('refuses an algorithm outside the pinned list, and accepts it once pinned', () => {
    const rs512 = mintDeviceToken(keys.privateKey, 'dev-1', { algorithm: 'RS512' });
    expect(verify('dev-1', rs512)).toBeNull();
    expect(makeDeviceTokenVerifier(keys.publicKey, ['RS256', 'RS512'])('dev-1', rs512)).toEqual({ deviceId: 'dev-1', accountId: null });
  });

  it.each([
    ['empty', ''],
    ['one word', 'not-a-token'],
    ['three dots of nothing', '..'],
    ['garbage segments', 'a.b.c'],
    ['header that is not JSON', `${base64url('{nope')}.${base64url({ sub: 'dev-1' })}.sig`],
    ['four segments', `${mintDeviceToken(keys.privateKey, 'dev-1')}.extra`],
    ['truncated signature', mintDeviceToken(keys.privateKey, 'dev-1').slice(0, -10)],
    ['a tampered payload', (() => {
      const [header, , signature] = mintDeviceToken(keys.privateKey, 'dev-1').split('.');
      return [header, base64url({ sub: 'dev-1', accountId: 'stolen', exp: now() + 3600 }), signature].join('.');
    })()],
  ])('refuses a malformed token: %s', (_name, token) => {
    expect(verify('dev-1', token)).toBeNull();
  });

  it('refuses a correctly signed token whose payload is not an object', () => {
    const stringPayload = jwt.sign('dev-1', keys.privateKey, { algorithm: 'RS256' });
    expect(jwt.verify(stringPayload, keys.publicKey, { algorithms: ['RS256'] })).toBe('dev-1');
    expect(verify('dev-1', stringPayload)).toBeNull();
  });

  it('throws at construction, not per token, when the key is not a public key PEM', () => {
    expect(() => makeDeviceTokenVerifier('not a pem', ['RS256'])).toThrow();
  });
});

describe('makeDeviceTokenChecker: refusal reasons and policy', () => {
  const check = makeDeviceTokenChecker(keys.publicKey, ['RS256']);
  const sign = (payload: object, header: object = {}) => jwt.sign(payload, keys.privateKey, { algorithm: 'RS256', header: { alg: 'RS256', ...header } as jwt.JwtHeader });
  const reason = (c: ReturnType<typeof check>) => (c.ok ? 'ok' : c.reason);

  it('names each refusal with one of a bounded set of reasons', () => {
    const cases: [string, string][] = [
      ['malformed', 'not-a-token'],
      ['malformed', `${base64url('{nope')}.${base64url({ sub: 'dev-1' })}.sig`],
      // As early OISP versions wrote exp: a date string (jsonwebtoken refuses a non-numeric exp).
      ['malformed', handMadeToken({ alg: 'RS256', typ: 'JWT' }, { sub: 'dev-1', exp: new Date(Date.now() + 86_400_000) }, (input) => crypto.sign('sha256', Buffer.from(input), keys.privateKey).toString('base64url'))],
      ['bad_algorithm', handMadeToken({ alg: 'none' }, { sub: 'dev-1', exp: now() + 3600 }, () => '')],
      ['bad_algorithm', mintDeviceToken(keys.privateKey, 'dev-1', { algorithm: 'RS512' })],
      ['bad_signature', mintDeviceToken(otherKeys.privateKey, 'dev-1')],
      ['expired', sign({ sub: 'dev-1', iat: now() - 3600, exp: now() - 60 })],
      ['not_yet_valid', sign({ sub: 'dev-1', nbf: now() + 600, exp: now() + 3600 })],
      ['sub_mismatch', mintDeviceToken(keys.privateKey, 'dev-2')],
      ['crit', sign({ sub: 'dev-1', exp: now() + 3600 }, { crit: ['exp'] })],
      ['crit', sign({ sub: 'dev-1', exp: now() + 3600 }, { crit: [] })],
      ['no_exp', sign({ sub: 'dev-1' })],
    ];
    for (const [expected, token] of cases) expect(reason(check('dev-1', token)), expected).toBe(expected);
    for (const [expected] of cases) expect(TOKEN_REFUSAL_REASONS).toContain(expected);
  });

  it('refuses crit even when jsonwebtoken itself accepts the token', () => {
    const token = sign({ sub: 'dev-1', exp: now() + 3600 }, { crit: ['b64'], b64: true });
    expect(jwt.verify(token, keys.publicKey, { algorithms: ['RS256'] })).toMatchObject({ sub: 'dev-1' });
    expect(reason(check('dev-1', token))).toBe('crit');
  });

  it('accepts a token without exp only when the policy says so', () => {
    const noExp = sign({ sub: 'dev-1' });
    expect(reason(makeDeviceTokenChecker(keys.publicKey, ['RS256'], { requireExp: false })('dev-1', noExp))).toBe('ok');
    expect(reason(check('dev-1', noExp))).toBe('no_exp');
  });

  it('bounds the age from iat when maxAgeSeconds is set', () => {
    const bounded = makeDeviceTokenChecker(keys.publicKey, ['RS256'], { maxAgeSeconds: 600 });
    expect(reason(bounded('dev-1', sign({ sub: 'dev-1', iat: now() - 60, exp: now() + 3600 })))).toBe('ok');
    expect(reason(bounded('dev-1', sign({ sub: 'dev-1', iat: now() - 3600, exp: now() + 3600 })))).toBe('too_old');
    expect(reason(bounded('dev-1', jwt.sign({ sub: 'dev-1', exp: now() + 3600 }, keys.privateKey, { algorithm: 'RS256', noTimestamp: true })))).toBe('no_iat');
    // Unbounded by default: an old iat is fine.
    expect(reason(check('dev-1', sign({ sub: 'dev-1', iat: now() - 10 * 365 * 86_400, exp: now() + 3600 })))).toBe('ok');
  });

  it('accepts a token shaped as OISP issues device tokens (exp in milliseconds, no iat) with the defaults', () => {
    // oisp-frontend authorization.js generateToken: header {typ, alg}; claims jti, iss, sub, exp (Date.getTime()), accounts, type.
    const oisp = jwt.sign(
      { jti: crypto.randomUUID(), iss: 'http://enableiot.com', sub: 'dev-1', exp: Date.now() + 30 * 86_400_000, accounts: [{ id: 'acc-oisp', role: 'device' }], type: 'device' },
      keys.privateKey,
      { algorithm: 'RS256', noTimestamp: true, header: { typ: 'JWT', alg: 'RS256' } },
    );
    expect(check('dev-1', oisp)).toEqual({ ok: true, device: { deviceId: 'dev-1', accountId: 'acc-oisp' }, issuedAt: null });
    // With DEVICE_TOKEN_MAX_AGE set it would be refused: it has no iat.
    expect(reason(makeDeviceTokenChecker(keys.publicKey, ['RS256'], { maxAgeSeconds: 86_400 })('dev-1', oisp))).toBe('no_iat');
  });

  it('reads DEVICE_TOKEN_REQUIRE_EXP (default true) and DEVICE_TOKEN_MAX_AGE (default unset)', () => {
    const base = { NODE_ENV: 'test' };
    expect(loadConfig(base)).toMatchObject({ deviceTokenRequireExp: true, deviceTokenMaxAgeSeconds: undefined });
    expect(loadConfig({ ...base, DEVICE_TOKEN_REQUIRE_EXP: 'false', DEVICE_TOKEN_MAX_AGE: '3600' })).toMatchObject({ deviceTokenRequireExp: false, deviceTokenMaxAgeSeconds: 3600 });
    expect(() => loadConfig({ ...base, DEVICE_TOKEN_REQUIRE_EXP: 'maybe' })).toThrow(/DEVICE_TOKEN_REQUIRE_EXP/);
    expect(() => loadConfig({ ...base, DEVICE_TOKEN_MAX_AGE: '0' })).toThrow(/DEVICE_TOKEN_MAX_AGE/);
  });
});
