/** Webhook configuration (defaults, bounds) and the sealing of secrets at rest. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { makeSecretBox, SecretUnavailableError } from '../../src/webhooks/secret-box.js';
import { signatureHeader } from '../../src/webhooks/signature.js';
import { verifySignature } from '../helpers/webhook-receiver.js';

const KEY_HEX = 'ab'.repeat(32);

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env, '/srv/app');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('webhook configuration', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({}, '/srv/app');
    expect(config).toMatchObject({ webhookMaxAgeHours: 24, webhookAllowPrivate: false, webhookTimeoutMs: 10_000, webhookRetryMinMs: 1_000, webhookRetryMaxMs: 600_000, webhookMaxConcurrency: 16, webhookGatherMs: 20 });
    expect(config.webhookSecretKey).toBeUndefined();
  });

  it('reads the key as hex or base64 and refuses anything but 32 bytes without quoting it', () => {
    expect(loadConfig({ WEBHOOK_SECRET_KEY: KEY_HEX }, '/srv/app').webhookSecretKey).toEqual(Buffer.alloc(32, 0xab));
    expect(loadConfig({ WEBHOOK_SECRET_KEY: Buffer.alloc(32, 7).toString('base64') }, '/srv/app').webhookSecretKey).toEqual(Buffer.alloc(32, 7));
    for (const bad of ['abcd', 'ab'.repeat(31), Buffer.alloc(16).toString('base64')]) {
      const err = configError({ WEBHOOK_SECRET_KEY: bad });
      expect(err.variable).toBe('WEBHOOK_SECRET_KEY');
      expect(err.message).not.toContain(bad);
    }
  });

  it('refuses out-of-range values naming the variable', () => {
    expect(configError({ WEBHOOK_MAX_AGE_HOURS: '0' }).variable).toBe('WEBHOOK_MAX_AGE_HOURS');
    expect(configError({ WEBHOOK_TIMEOUT_MS: '600000' }).variable).toBe('WEBHOOK_TIMEOUT_MS');
    expect(configError({ WEBHOOK_ALLOW_PRIVATE: 'maybe' }).variable).toBe('WEBHOOK_ALLOW_PRIVATE');
    expect(configError({ WEBHOOK_GATHER_MS: '5000' }).variable).toBe('WEBHOOK_GATHER_MS');
    expect(configError({ WEBHOOK_RETRY_MIN_MS: '5000', WEBHOOK_RETRY_MAX_MS: '1000' }).variable).toBe('WEBHOOK_RETRY_MIN_MS');
  });
});

describe('secrets at rest', () => {
  const id = '00000000-0000-4000-8000-000000000001';

  it('are sealed with the key, open only with it and only for their own webhook', () => {
    const box = makeSecretBox(Buffer.from(KEY_HEX, 'hex'));
    const sealed = box.seal('whsec-0123456789abcdef', id);
    expect(sealed).toMatch(/^sealed:v1:/);
    expect(sealed).not.toContain('whsec');
    expect(box.seal('whsec-0123456789abcdef', id)).not.toBe(sealed);
    expect(box.open(sealed, id)).toBe('whsec-0123456789abcdef');
    expect(() => box.open(sealed, '00000000-0000-4000-8000-000000000002')).toThrow(SecretUnavailableError);
    expect(() => makeSecretBox(Buffer.alloc(32, 1)).open(sealed, id)).toThrow(SecretUnavailableError);
    expect(() => makeSecretBox(undefined).open(sealed, id)).toThrow(/WEBHOOK_SECRET_KEY is not set/);
  });

  it('are stored as given without a key, and such a one still opens once a key is set', () => {
    expect(makeSecretBox(undefined).seal('whsec-0123456789abcdef', id)).toBe('whsec-0123456789abcdef');
    expect(makeSecretBox(Buffer.from(KEY_HEX, 'hex')).open('whsec-0123456789abcdef', id)).toBe('whsec-0123456789abcdef');
  });
});

describe('X-Iotws-Signature', () => {
  it('is t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">, which the README snippet verifies, within its tolerance only', () => {
    const header = signatureHeader('whsec-0123456789abcdef', '{"id":1}', 1_700_000_000);
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
    expect(verifySignature('whsec-0123456789abcdef', header, '{"id":1}', 1_700_000_100)).toBe(true);
    expect(verifySignature('whsec-0123456789abcdef', header, '{"id":1}', 1_700_000_000 + 301)).toBe(false);
    expect(verifySignature('whsec-0123456789abcdef', header, '{"id":2}', 1_700_000_000)).toBe(false);
  });
});
