/**
 * `--probe` of the actuations bench: code injected with `--import` into every server under
 * test (ours and both bare ones, identically) that records, with wall-clock times
 * (performance.timeOrigin + performance.now(), the clock the devices' latencies use):
 * - event-loop stalls: a 2 ms interval timer that fired `STALL_MS` or more late (the loop
 *   was busy, blocked or not scheduled that long), with the GC time that fell inside the
 *   gap and the CPU the process used in it (busy, or off the CPU on this shared machine);
 * - GC pauses (PerformanceObserver 'gc'): kind and duration, each ≥ 1 ms;
 * - `monitorEventLoopDelay` (1 ms resolution) percentiles, reset at every `mark`.
 * Lines go to the JSONL file named by BENCH_PROBE_FILE (appended synchronously: the probe
 * must not add async work of its own). The bench reads the file after each latency window
 * and keeps the lines inside it. The probe's own cost (a 2 ms timer reading
 * `process.cpuUsage`, ~3% of a `--cpu-prof` profile) is the same for all servers, but
 * figures taken with `--probe` are not comparable with figures taken without it.
 */
import fs from 'node:fs';

export const STALL_MS = 8;

const HOOK = `
import fs from 'node:fs';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
const file = process.env.BENCH_PROBE_FILE;
if (file) {
  const fd = fs.openSync(file, 'a');
  const now = () => performance.timeOrigin + performance.now();
  const write = (o) => fs.writeSync(fd, JSON.stringify(o) + '\\n');
  const gcs = [];
  const KINDS = { 1: 'scavenge', 2: 'mark-sweep-compact', 4: 'incremental', 8: 'weak-callbacks' };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const at = performance.timeOrigin + e.startTime;
      gcs.push({ at, ms: e.duration });
      if (gcs.length > 200) gcs.shift();
      if (e.duration >= 1) write({ t: 'gc', at, ms: e.duration, kind: KINDS[e.detail?.kind] ?? String(e.detail?.kind) });
    }
  }).observe({ entryTypes: ['gc'] });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let last = now();
  let lastCpu = process.cpuUsage();
  setInterval(() => {
    const t = now();
    const lag = t - last - 2;
    const cpu = process.cpuUsage();
    if (lag >= ${STALL_MS}) {
      const gcMs = gcs.filter((g) => g.at >= last && g.at <= t).reduce((s, g) => s + g.ms, 0);
      // CPU the process used in the gap: near the gap's length, the loop was busy; far below, it was not running (descheduled, waiting).
      const cpuMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
      write({ t: 'stall', at: last, ms: lag, gcMs, cpuMs });
    }
    last = t;
    lastCpu = cpu;
  }, 2).unref();
  setInterval(() => {
    write({ t: 'loop', at: now(), p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, n: h.count });
    h.reset();
  }, 1000).unref();
}
`;
export const PROBE_HOOK_IMPORT = `data:text/javascript;base64,${Buffer.from(HOOK).toString('base64')}`;

export type ProbeLine =
  | { t: 'gc'; at: number; ms: number; kind: string }
  | { t: 'stall'; at: number; ms: number; gcMs: number; cpuMs: number }
  | { t: 'loop'; at: number; p50: number; p99: number; max: number; n: number };

export interface ProbeWindow {
  seconds: number;
  stalls: number;
  /** Stalls whose gap held at least half its length in GC. */
  gcStalls: number;
  /** Stalls in which the process used less than half the gap's length in CPU: it was not running (the machine's other processes had the cores). */
  offCpuStalls: number;
  stallMaxMs: number;
  stallTotalMs: number;
  gcPauses: number;
  gcTotalMs: number;
  gcMaxMs: number;
  /** Worst per-second event-loop delay p99 and max (monitorEventLoopDelay). */
  loopP99MaxMs: number;
  loopMaxMs: number;
  /** The longest stalls, with when (ms from the window's start) and their GC share. */
  worst: { atMs: number; ms: number; gcMs: number; cpuMs: number }[];
}

/** What the probe recorded between `fromMs` and `toMs` (wall clock). */
export function readProbe(file: string, fromMs: number, toMs: number): ProbeWindow {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    // no probe output (yet)
  }
  const lines = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProbeLine)
    .filter((l) => l.at >= fromMs && l.at <= toMs);
  const stalls = lines.filter((l): l is Extract<ProbeLine, { t: 'stall' }> => l.t === 'stall');
  const gcs = lines.filter((l): l is Extract<ProbeLine, { t: 'gc' }> => l.t === 'gc');
  // A loop line covers the second before it: only those wholly inside the window.
  const loops = lines.filter((l): l is Extract<ProbeLine, { t: 'loop' }> => l.t === 'loop' && l.at - 1000 >= fromMs);
  return {
    seconds: (toMs - fromMs) / 1000,
    stalls: stalls.length,
    gcStalls: stalls.filter((s) => s.gcMs >= s.ms / 2).length,
    offCpuStalls: stalls.filter((s) => s.cpuMs < s.ms / 2).length,
    stallMaxMs: Math.max(0, ...stalls.map((s) => s.ms)),
    stallTotalMs: stalls.reduce((n, s) => n + s.ms, 0),
    gcPauses: gcs.length,
    gcTotalMs: gcs.reduce((n, g) => n + g.ms, 0),
    gcMaxMs: Math.max(0, ...gcs.map((g) => g.ms)),
    loopP99MaxMs: Math.max(0, ...loops.map((l) => l.p99)),
    loopMaxMs: Math.max(0, ...loops.map((l) => l.max)),
    worst: [...stalls]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 5)
      .map((s) => ({ atMs: Math.round(s.at - fromMs), ms: Math.round(s.ms), gcMs: Math.round(s.gcMs), cpuMs: Math.round(s.cpuMs) })),
  };
}
