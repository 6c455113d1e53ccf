/**
 * Experiment (not wired into the product or `npm run bench`): the sender's own CPU per
 * webhook POST for several HTTP clients, for issue 14 (the webhook sender cost more CPU
 * per delivery than an actuation).
 *
 *   npx tsx bench/experiments/webhook-client.ts [--posts 20000] [--rounds 3] [--variants boundedPost,undici-dispatch]
 *
 * A receiver in a child process (node:http on 127.0.0.1, reads the body, answers 204).
 * In this process, per client: `--posts` sequential POSTs (one in flight, as the sender
 * sends to one endpoint) of a ~400-byte JSON body with the delivery's headers over one
 * kept-alive connection, after a 2,000-POST warm-up; this process's CPU
 * (`process.cpuUsage`, user + system) per POST. The order of the clients rotates per round.
 * - boundedPost: `src/webhooks/bounded-post.ts` as the sender calls it (its per-endpoint
 *   connection, the shutdown signal, the timer, the headers object built per POST):
 *   undici's `Client.dispatch`;
 * - boundedPost-node-http: the same before undici (`bounded-post-node-http.ts`, main 6131eed):
 *   `http.request` on a keep-alive `http.Agent`, a timer and the signal per request;
 * - http-minimal: `http.request` on the same kind of agent, headers built once, no timer,
 *   no signal, the answer drained: what node's client costs at the least;
 * - undici-request: `Client.request` (undici, a connection with `lookup: guardedLookup`
 *   so the address is checked at connect), the body read by `body.dump`;
 * - undici-dispatch: `Client.dispatch` with a handler counting the bytes read (the
 *   lowest-level undici API), the same connector.
 * The address check runs once per connection (keep-alive), so it is not in these figures;
 * 127.0.0.1 is refused by it, so these clients use a lookup that lets loopback through.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dns from 'node:dns';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, buildConnector, type Dispatcher } from 'undici';
import { int } from '../lib/cli.js';
import { killChild, waitForPort } from '../lib/processes.js';
import { fmt, median } from '../lib/stats.js';
import { freePort } from '../../src/db/embedded-postgres.js';
import { boundedPost, makeConnection, MAX_RESPONSE_BYTES } from '../../src/webhooks/bounded-post.js';
import * as nodeHttp from './bounded-post-node-http.js';
import { signatureHeader } from '../../src/webhooks/signature.js';

type Variant = 'boundedPost' | 'boundedPost-node-http' | 'http-minimal' | 'undici-request' | 'undici-dispatch';
const VARIANTS: Variant[] = ['boundedPost', 'boundedPost-node-http', 'http-minimal', 'undici-request', 'undici-dispatch'];

const SECRET = 'bench-secret-0123456789abcdef';
let nextId = 1;
function delivery(): { body: string; headers: Record<string, string> } {
  const id = nextId++;
  const body = JSON.stringify({
    id,
    type: 'actuation.acked',
    at: new Date().toISOString(),
    data: { id: '0190f0c2-7b7a-7c3e-9a51-3f1f0a2b4c5d', deviceId: 'bench-device-17', componentId: 'lamp', command: 'set', seq: id, status: 'acked', params: [{ name: 'brightness', value: 80 }], createdAt: new Date().toISOString(), sentAt: new Date().toISOString(), ackedAt: new Date().toISOString(), accountId: null },
  });
  return {
    body,
    headers: {
      'x-iotws-event-id': String(id),
      'x-iotws-signature': signatureHeader(SECRET, body, Math.floor(Date.now() / 1000)),
      'x-iotws-delivery-attempt': '1',
    },
  };
}

/** A lookup as the guard's, minus the refusal: the receiver is on loopback. */
function plainLookup(hostname: string, options: dns.LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    if (options.all) return callback(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

interface Poster {
  post(body: string, headers: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

function makePoster(variant: Variant, origin: string): Poster {
  const url = new URL(`${origin}/hook`);
  if (variant === 'boundedPost') {
    const aborter = new AbortController();
    const connection = makeConnection({ allowPrivate: true, timeoutMs: 10_000, signal: aborter.signal });
    return {
      async post(body, headers) {
        const r = await boundedPost({ url, body, headers, timeoutMs: 10_000, allowPrivate: true, connection });
        return r.statusCode ?? 0;
      },
      close: async () => connection.destroy(),
    };
  }
  if (variant === 'boundedPost-node-http') {
    const agents = nodeHttp.makeAgents(true);
    const aborter = new AbortController();
    return {
      async post(body, headers) {
        const r = await nodeHttp.boundedPost({ url, body, headers, timeoutMs: 10_000, allowPrivate: true, signal: aborter.signal, agents });
        return r.statusCode ?? 0;
      },
      close: async () => agents.destroy(),
    };
  }
  if (variant === 'http-minimal') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, lookup: plainLookup } as http.AgentOptions);
    return {
      post(body, headers) {
        return new Promise((resolve, reject) => {
          headers['content-type'] = 'application/json';
          headers['content-length'] = String(Buffer.byteLength(body));
          const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers });
          req.on('error', reject);
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.end(body);
        });
      },
      close: async () => agent.destroy(),
    };
  }
  const client = new Client(origin, { connect: buildConnector({ lookup: plainLookup } as buildConnector.BuildOptions), pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  if (variant === 'undici-request') {
    return {
      async post(body, headers) {
        headers['content-type'] = 'application/json';
        const res = await client.request({ method: 'POST', path: url.pathname, headers, body });
        await res.body.dump({ limit: MAX_RESPONSE_BYTES });
        return res.statusCode;
      },
      close: () => client.close(),
    };
  }
  return {
    post(body, headers) {
      headers['content-type'] = 'application/json';
      return new Promise((resolve, reject) => {
        let statusCode = 0;
        let read = 0;
        let abort: (err?: Error) => void = () => {};
        // The legacy handler shape: Client.dispatch takes it as is (the newer one needs a wrapper).
        const handler: Dispatcher.DispatchHandler = {
          onConnect(a) {
            abort = a;
          },
          onHeaders(status) {
            statusCode = status;
            return true;
          },
          onData(chunk) {
            read += chunk.length;
            if (read >= MAX_RESPONSE_BYTES) abort(new Error('enough'));
            return true;
          },
          onComplete: () => resolve(statusCode),
          onError: reject,
        };
        client.dispatch({ method: 'POST', path: url.pathname, headers, body }, handler);
      });
    },
    close: () => client.close(),
  };
}

/** What every variant spends besides the client (the body's JSON, the HMAC), measured alone. */
function buildOnly(posts: number): number {
  const before = process.cpuUsage();
  let n = 0;
  for (let i = 0; i < posts; i++) n += delivery().body.length;
  const cpu = process.cpuUsage(before);
  if (n === 0) throw new Error('nothing built');
  return (cpu.user + cpu.system) / posts;
}

async function run(poster: Poster, posts: number): Promise<number> {
  for (let i = 0; i < posts; i++) {
    const { body, headers } = delivery();
    const status = await poster.post(body, headers);
    if (status !== 204) throw new Error(`answered ${status}`);
  }
  return posts;
}

function serve(port: number): void {
  http
    .createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = 204;
        res.end();
      });
    })
    .listen(port, '127.0.0.1');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      posts: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '3' },
      variants: { type: 'string', default: VARIANTS.join(',') },
      serve: { type: 'string' },
    },
  });
  if (values.serve) {
    process.on('SIGTERM', () => process.exit(0));
    return serve(Number(values.serve));
  }
  const posts = int('posts', values.posts, 100, 10_000_000);
  const rounds = int('rounds', values.rounds, 1, 9);
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', String(port)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const variants = values.variants.split(',') as Variant[];
  for (const v of variants) if (!VARIANTS.includes(v)) throw new Error(`--variants: ${v} is not one of ${VARIANTS.join(', ')}`);
  const results = new Map<Variant, number[]>(variants.map((v) => [v, []]));
  try {
    await waitForPort(port, { child, pid: child.pid!, output: { text: () => '' }, inspectorUrl: () => Promise.reject(new Error('no inspector')) }, 30_000);
    const origin = `http://127.0.0.1:${port}`;
    for (let round = 1; round <= rounds; round++) {
      for (let i = 0; i < variants.length; i++) {
        const variant = variants[(i + round - 1) % variants.length]!;
        const poster = makePoster(variant, origin);
        await run(poster, 2_000);
        const before = process.cpuUsage();
        const started = performance.now();
        await run(poster, posts);
        const cpu = process.cpuUsage(before);
        const ms = performance.now() - started;
        await poster.close();
        const us = (cpu.user + cpu.system) / posts;
        results.get(variant)!.push(us);
        process.stdout.write(`round ${round} ${variant}: ${fmt(us, 1)} µs CPU per POST (user ${fmt(cpu.user / posts, 1)}, system ${fmt(cpu.system / posts, 1)}), ${fmt((posts / ms) * 1000)} POSTs/s\n`);
      }
    }
  } finally {
    await killChild(child, 'SIGKILL');
  }
  const built = buildOnly(posts);
  process.stdout.write(`\nbuilding a delivery (its JSON, its signature), included in each: ${fmt(built, 1)} µs\n`);
  process.stdout.write('median of rounds, µs of CPU per POST (rounds)\n');
  for (const [variant, us] of results) process.stdout.write(`${variant}: ${fmt(median(us), 1)} (${us.map((u) => fmt(u, 1)).join(', ')})\n`);
}

await main();
