/**
 * Experiment (not wired into `npm run bench`): what verifying one RS256 device token
 * costs, per library, in this process alone (no server, no sockets):
 *
 *   npx tsx bench/experiments/token-verify.ts [--tokens 20000] [--rounds 3] [--in-flight 45]
 *
 * - jsonwebtoken: `jwt.verify` with the key parsed once (the checker before jose);
 * - jose: `jwtVerify` with the same KeyObject (jose turns it into a CryptoKey once per algorithm);
 *   one token at a time, and `--in-flight` at once (devices connecting together);
 * - crypto.verify: the signature check alone, the floor under either.
 * Per verification: the main thread's CPU (/proc schedstat of this thread) and the
 * whole process's (all threads: WebCrypto runs its verify on libuv's thread pool).
 * Variants alternate within each round; medians over rounds.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { jwtVerify } from 'jose';
import jwt from 'jsonwebtoken';
import { int } from '../lib/cli.js';
import { fmt, median, renderTables } from '../lib/stats.js';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, 'in-flight': { type: 'string', default: '45' } } });
const TOKENS = int('tokens', values.tokens!, 100, 1_000_000);
const ROUNDS = int('rounds', values.rounds!, 1, 20);
const IN_FLIGHT = int('in-flight', values['in-flight']!, 1, 1000);

const keys = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicKey = keys.publicKey;
const tokens = Array.from({ length: TOKENS }, (_, i) => jwt.sign({ type: 'device', accountId: 'acc-1' }, keys.privateKey, { algorithm: 'RS256', subject: `dev-${i}`, expiresIn: '1h' }));

/** ns on CPU: this (main) thread, and every thread of the process. */
function cpuNs(): { main: number; all: number } {
  const main = Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  let all = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      all += Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return { main, all };
}

const jwtOptions: jwt.VerifyOptions & { complete: true } = { algorithms: ['RS256'], clockTolerance: 5, complete: true };
const joseOptions = { algorithms: ['RS256'], clockTolerance: 5 };

const variants: Record<string, () => Promise<void>> = {
  jsonwebtoken: async () => {
    for (const t of tokens) jwt.verify(t, publicKey, jwtOptions);
  },
  'jose, 1 at a time': async () => {
    for (const t of tokens) await jwtVerify(t, publicKey, joseOptions);
  },
  [`jose, ${IN_FLIGHT} at once`]: async () => {
    for (let i = 0; i < tokens.length; i += IN_FLIGHT) await Promise.all(tokens.slice(i, i + IN_FLIGHT).map((t) => jwtVerify(t, publicKey, joseOptions)));
  },
  'crypto.verify (signature only)': async () => {
    for (const t of tokens) {
      const dot = t.lastIndexOf('.');
      crypto.verify('sha256', Buffer.from(t.slice(0, dot)), publicKey, Buffer.from(t.slice(dot + 1), 'base64url'));
    }
  },
};

const results: Record<string, { main: number[]; all: number[]; wall: number[] }> = {};
for (const name of Object.keys(variants)) await variants[name]!(); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  const names = Object.keys(variants);
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + round) % names.length]!;
    const start = cpuNs();
    const t0 = performance.now();
    await variants[name]!();
    const wall = performance.now() - t0;
    const end = cpuNs();
    const r = (results[name] ??= { main: [], all: [], wall: [] });
    r.main.push((end.main - start.main) / 1000 / TOKENS);
    r.all.push((end.all - start.all) / 1000 / TOKENS);
    r.wall.push((wall * 1000) / TOKENS);
  }
}
const { text, markdown } = renderTables(
  ['variant', 'main thread CPU', 'process CPU (all threads)', 'wall'],
  Object.entries(results).map(([name, r]) => [name, fmt(median(r.main), 1), fmt(median(r.all), 1), fmt(median(r.wall), 1)]),
);
console.log(`RS256 device token verification, ${TOKENS} tokens, median of ${ROUNDS} rounds (µs per token)\n${text}\n\n${markdown}`);
