/**
 * A real HTTP server on an ephemeral port that receives webhook deliveries: it keeps
 * each request (headers, raw body, parsed body) and answers as `respond` says, or
 * never (`'hang'`: the request is held open until the receiver closes).
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedDelivery {
  headers: http.IncomingHttpHeaders;
  rawBody: string;
  body: { id: number; type: string; at: string; data: Record<string, unknown> };
  /** Requests being answered at the moment this one arrived (itself included). */
  concurrent: number;
}

export type Answer = number | 'hang';

export interface WebhookReceiver {
  url: string;
  port: number;
  received: ReceivedDelivery[];
  /** Event ids in arrival order. */
  ids(): number[];
  /** Most requests being answered at once so far. */
  maxConcurrent(): number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(respond: (delivery: ReceivedDelivery, index: number) => Answer = () => 200): Promise<WebhookReceiver> {
  const received: ReceivedDelivery[] = [];
  let inFlight = 0;
  let maxConcurrent = 0;
  const server = http.createServer((req, res) => {
    inFlight++;
    maxConcurrent = Math.max(maxConcurrent, inFlight);
    let done = false;
    const finish = () => {
      if (!done) inFlight--;
      done = true;
    };
    res.on('close', finish);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const delivery: ReceivedDelivery = { headers: req.headers, rawBody, body: JSON.parse(rawBody) as ReceivedDelivery['body'], concurrent: inFlight };
      received.push(delivery);
      const answer = respond(delivery, received.length - 1);
      if (answer === 'hang') return;
      finish();
      res.writeHead(answer, { 'content-type': 'text/plain' }).end(`answer ${answer}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    ids: () => received.map((d) => d.body.id),
    maxConcurrent: () => maxConcurrent,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a receiver does with `X-Iotws-Signature` (the README's snippet): recompute over the raw body, compare in constant time. */
export function verifySignature(secret: string, header: string | undefined, rawBody: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=') as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds || typeof parts.v1 !== 'string') return false;
  const expected = crypto.createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  const given = Buffer.from(parts.v1, 'hex');
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}
