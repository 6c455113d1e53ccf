/**
 * `X-Iotws-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed
 * with the webhook's secret. The receiver recomputes it over the raw body it got and
 * compares in constant time; `t` lets it refuse replays (see the README).
 */
import crypto from 'node:crypto';

export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const v1 = crypto.createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${v1}`;
}
