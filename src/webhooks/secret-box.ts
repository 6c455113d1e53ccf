/**
 * Webhook secrets at rest. Signing needs the secret itself (a hash would not do), so
 * with `WEBHOOK_SECRET_KEY` set it is stored sealed: AES-256-GCM, a random 96-bit IV per
 * seal, the webhook's id as additional data (a sealed secret copied to another row does
 * not open). Without the key it is stored as given, as DSS stream keys are (README).
 * A secret stored before the key was set still opens (and is sealed by its next change);
 * a sealed one without the key, or with another key, does not: `SecretUnavailableError`.
 */
import crypto from 'node:crypto';

const SEALED = 'sealed:v1:';

export class SecretUnavailableError extends Error {
  override name = 'SecretUnavailableError';
}

export interface SecretBox {
  seal(secret: string, webhookId: string): string;
  open(stored: string, webhookId: string): string;
}

/** `key`: 32 bytes, or undefined to store secrets as given. */
export function makeSecretBox(key: Buffer | undefined): SecretBox {
  return {
    seal(secret, webhookId) {
      if (!key) return secret;
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(webhookId));
      const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return SEALED + Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
    },
    open(stored, webhookId) {
      if (!stored.startsWith(SEALED)) return stored;
      if (!key) throw new SecretUnavailableError('the webhook secret is sealed and WEBHOOK_SECRET_KEY is not set');
      const raw = Buffer.from(stored.slice(SEALED.length), 'base64url');
      try {
        const decipher = crypto.createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12)).setAAD(Buffer.from(webhookId));
        decipher.setAuthTag(raw.subarray(12, 28));
        return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
      } catch (err) {
        throw new SecretUnavailableError('the webhook secret does not open with WEBHOOK_SECRET_KEY (was it changed?)', { cause: err });
      }
    },
  };
}
