/**
 * Experiment (not wired into the product or `npm run bench`): what the HTTP framework
 * alone costs per request here, for deciding a later switch away from express.
 *
 *   npx tsx bench/experiments/framework-cost.ts [--requests 20000] [--rounds 3] [--connections 32]
 *
 * The same route, `POST /v1/devices/:deviceId/actuations` with the body the actuations
 * bench sends, answered 202 with an actuation summary, on three servers, each its own
 * process, in one run, the order rotating per round:
 * - express 5: `express.json()` then a handler that checks the body by hand;
 * - fastify 5: the body checked by its compiled JSON schema (ajv) and the answer
 *   serialized by its compiled response schema (fast-json-stringify);
 * - bare node:http: the path matched with a regex, the body read and `JSON.parse`d,
 *   checked by hand, `JSON.stringify`d.
 * No database, no auth, no WebSocket: only what the framework does around a request.
 * One load generator (an undici Pool, keep-alive, `--connections` requests in flight,
 * closed loop) in this process. Per server and round: requests/s and the server's CPU
 * (all threads, /proc schedstat) per request, after a 2,000-request warm-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { int } from '../lib/cli.js';
import { cpuMs, killChild, waitForPort } from '../lib/processes.js';
import { freePort } from '../../src/db/embedded-postgres.js';
import { fmt, median, renderTables } from '../lib/stats.js';

type Framework = 'express' | 'fastify' | 'node';
const FRAMEWORKS: Framework[] = ['express', 'fastify', 'node'];
const ROUTE = /^\/v1\/devices\/([^/]+)\/actuations$/;

interface Body {
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
}

/** The same hand check for express and node:http (fastify's schema says the same). */
function isBody(b: unknown): b is Body {
  const o = b as Body;
  return (
    typeof o === 'object' && o !== null && typeof o.componentId === 'string' && o.componentId.length >= 1 && o.componentId.length <= 256 &&
    typeof o.command === 'string' && o.command.length >= 1 && o.command.length <= 256 &&
    Array.isArray(o.params) && o.params.length <= 100 && o.params.every((p) => typeof p?.name === 'string')
  );
}

let seq = 0;
const summary = (deviceId: string) => ({ id: crypto.randomUUID(), deviceId, seq: ++seq, status: 'sent', createdAt: new Date().toISOString(), expiresAt: null });

async function serve(framework: Framework, port: number): Promise<void> {
  if (framework === 'express') {
    const { default: express } = await import('express');
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.post('/v1/devices/:deviceId/actuations', express.json({ limit: 64 * 1024 }), (req, res) => {
      if (!isBody(req.body)) return void res.status(400).json({ code: 'VALIDATION_FAILED' });
      res.status(202).json(summary(req.params.deviceId as string));
    });
    http.createServer(app).listen(port, '127.0.0.1');
  } else if (framework === 'fastify') {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
    const str = (max: number) => ({ type: 'string', minLength: 1, maxLength: max });
    app.post<{ Params: { deviceId: string }; Body: Body }>(
      '/v1/devices/:deviceId/actuations',
      {
        schema: {
          params: { type: 'object', properties: { deviceId: str(256) }, required: ['deviceId'] },
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['componentId', 'command'],
            properties: {
              componentId: str(256),
              command: str(256),
              params: { type: 'array', maxItems: 100, items: { type: 'object', required: ['name'], properties: { name: str(256), value: {} } } },
            },
          },
          response: {
            202: {
              type: 'object',
              properties: {
                id: { type: 'string' },
                deviceId: { type: 'string' },
                seq: { type: 'integer' },
                status: { type: 'string' },
                createdAt: { type: 'string' },
                expiresAt: { type: ['string', 'null'] },
              },
            },
          },
        },
      },
      async (req, reply) => {
        reply.code(202);
        return summary(req.params.deviceId);
      },
    );
    await app.listen({ port, host: '127.0.0.1' });
  } else {
    const send = (res: http.ServerResponse, status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    http
      .createServer((req, res) => {
        const match = req.method === 'POST' ? ROUTE.exec(req.url ?? '') : null;
        if (!match) return send(res, 404, { code: 'NOT_FOUND' });
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return send(res, 400, { code: 'VALIDATION_FAILED' });
          }
          if (!isBody(body)) return send(res, 400, { code: 'VALIDATION_FAILED' });
          send(res, 202, summary(decodeURIComponent(match[1]!)));
        });
      })
      .listen(port, '127.0.0.1');
  }
}

async function load(origin: string, requests: number, connections: number): Promise<{ ms: number; failed: number }> {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  let next = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < requests) {
        const i = next++;
        const res = await pool.request({
          method: 'POST',
          path: `/v1/devices/bench-device-${i % 1000}/actuations`,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ componentId: 'bench', command: 'set', params: [{ name: 't', value: Date.now() }] }),
        });
        await res.body.text();
        if (res.statusCode !== 202) failed++;
      }
    }),
  );
  const ms = performance.now() - started;
  await pool.close();
  return { ms, failed };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '32' },
      serve: { type: 'string' },
      port: { type: 'string' },
    },
  });
  if (values.serve) {
    // A clean exit on SIGTERM, so that `node --cpu-prof` writes its profile.
    process.on('SIGTERM', () => process.exit(0));
    return serve(values.serve as Framework, Number(values.port));
  }
  const requests = int('requests', values.requests, 100, 10_000_000);
  const rounds = int('rounds', values.rounds, 1, 9);
  const connections = int('connections', values.connections, 1, 256);
  const results: { framework: Framework; perSec: number; cpuUs: number }[] = [];
  const children: ChildProcess[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (let i = 0; i < FRAMEWORKS.length; i++) {
        const framework = FRAMEWORKS[(i + round - 1) % FRAMEWORKS.length]!;
        const port = await freePort();
        const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', framework, '--port', String(port)], {
          stdio: ['ignore', 'inherit', 'inherit'],
          env: { ...process.env, NODE_ENV: 'production' },
        });
        children.push(child);
        await waitForPort(port, { child, pid: child.pid!, output: { text: () => '' }, inspectorUrl: () => Promise.reject(new Error('no inspector')) }, 30_000);
        const origin = `http://127.0.0.1:${port}`;
        await load(origin, 2_000, connections);
        const before = cpuMs(child.pid!);
        const { ms, failed } = await load(origin, requests, connections);
        const cpu = cpuMs(child.pid!) - before;
        if (failed > 0) throw new Error(`${framework}: ${failed} requests not answered 202`);
        const r = { framework, perSec: (requests / ms) * 1000, cpuUs: (cpu * 1000) / requests };
        results.push(r);
        process.stdout.write(`round ${round} ${framework}: ${fmt(r.perSec)} requests/s, server CPU ${fmt(r.cpuUs)} µs per request\n`);
        await killChild(child, 'SIGKILL');
      }
    }
  } finally {
    for (const child of children) await killChild(child, 'SIGKILL');
  }
  const m = (f: Framework, k: 'perSec' | 'cpuUs') => median(results.filter((r) => r.framework === f).map((r) => r[k]));
  const rows = FRAMEWORKS.map((f) => [f, fmt(m(f, 'perSec')), fmt(m(f, 'cpuUs')), `${fmt(m(f, 'cpuUs') - m('node', 'cpuUs'))} µs`]);
  const { text, markdown } = renderTables([`POST → 202, ${fmt(requests)} requests, ${connections} in flight, median of ${rounds}`, 'requests/s', 'server CPU µs/request', 'over node:http'], rows);
  process.stdout.write(`\n${text}\n\n${markdown}\n`);
}

await main();
