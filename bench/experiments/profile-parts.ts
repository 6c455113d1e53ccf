/**
 * Where a server's CPU goes, by part: reads .cpuprofile files (`npm run bench -- actuations
 * --cpu-prof` leaves them in the directory it prints) and prints, per file, self time by
 * part (our src/ folders and files, each npm package family, node internals, GC) and
 * inclusive ("total") time of each of our src/ files: a sample counts once for every file
 * on its stack, so `src/http/audit.ts` 5% means 5% of the busy samples ran in or under it.
 *
 * Weighted by samples, not by the time between them (`--weight time` for that): on a loaded
 * machine a sample taken after the process was preempted carries the whole wait (deltas of
 * 20-200 ms, where the interval is 1 ms), and it lands on whatever was running then, mostly
 * a `writev` that woke the peer (PostgreSQL, a device) on the same cores. The sample count
 * is the closer proxy for CPU. `--from S --to S`: only samples in that span of the profile
 * (seconds from its start), e.g. the single-POST phase.
 *
 *   npx tsx bench/experiments/profile-parts.ts DIR [--top N] [--weight samples|time] [--from S] [--to S]
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import type { CpuProfile } from '../lib/cpu-profile.js';

/** npm packages grouped by what they do for us. */
const PACKAGE_PARTS: [RegExp, string][] = [
  [/^(fastify|find-my-way|avvio|light-my-request|fast-json-stringify|fast-querystring|fast-uri|fast-decode-uri-component|@fastify\/.*|abstract-logging|process-warning|rfdc|secure-json-parse|toad-cache|json-schema-ref-resolver|ajv.*)$/, 'fastify'],
  [/^(pg|pg-protocol|pg-types|pg-pool|pg-connection-string|postgres-.*|pgpass|buffer-writer|packet-reader)$/, 'pg driver'],
  [/^(pino|pino-std-serializers|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free)$/, 'pino'],
  [/^(prom-client|tdigest|bintrees)$/, 'prom-client'],
  [/^ws$/, 'ws'],
  [/^zod$/, 'zod'],
  [/^uuid$/, 'uuid'],
];

function partOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg && !url.includes('/.cache/')) {
    for (const [re, part] of PACKAGE_PARTS) if (re.test(pkg[1]!)) return part;
    return pkg[1]!;
  }
  if (url.startsWith('node:')) {
    if (/^node:(_http|http)/.test(url)) return 'node:http';
    if (/^node:(net|stream|internal\/streams|internal\/stream_base)/.test(url)) return 'node:net+streams';
    if (/^node:internal\/(process\/task_queues|timers|async_hooks)|^node:timers/.test(url)) return 'node:timers+microtasks';
    return 'node:other';
  }
  const src = /\/(dist|src)\/(.+)$/.exec(url);
  return src ? `src/${src[2]!.replace(/\.js$/, '.ts')}` : path.basename(url);
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: {
    top: { type: 'string', default: '25' },
    weight: { type: 'string', default: 'samples' },
    from: { type: 'string', default: '0' },
    to: { type: 'string', default: 'Infinity' },
  },
});
const bySamples = values.weight !== 'time';
const fromUs = Number(values.from) * 1e6;
const toUs = Number(values.to) * 1e6;
const dir = positionals[0];
if (!dir) throw new Error('usage: profile-parts.ts DIR [--top N]');
const topN = Number(values.top);

const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
for (const file of files) {
  const profile = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  let busy = 0;
  const self = new Map<string, number>();
  const selfFn = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let clock = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    clock += profile.timeDeltas[i] ?? 0;
    if (clock < fromUs || clock >= toUs) continue;
    const us = bySamples ? 1000 : (profile.timeDeltas[i] ?? 0);
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    busy += us;
    const part = partOf(url, functionName);
    self.set(part, (self.get(part) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${part}${url ? `:${lineNumber + 1}` : ''}`;
    selfFn.set(fn, (selfFn.get(fn) ?? 0) + us);
    // Inclusive: each of our src/ files once per sample, wherever it is on the stack.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const p = partOf(byId.get(at)!.callFrame.url, byId.get(at)!.callFrame.functionName);
      if (p.startsWith('src/') && !seen.has(p)) {
        seen.add(p);
        inclusive.set(p, (inclusive.get(p) ?? 0) + us);
      }
    }
  }
  const print = (title: string, m: Map<string, number>, n: number) => {
    console.log(`  ${title}`);
    for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      console.log(`    ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`);
    }
  };
  console.log(`${file}: ${bySamples ? `${busy / 1000} busy samples (shown as 1 ms each)` : `${(busy / 1000).toFixed(0)} ms busy`}`);
  print('self time by part:', self, topN);
  print('inclusive time by src/ file:', inclusive, topN);
  print('self time by function:', selfFn, topN);
}
