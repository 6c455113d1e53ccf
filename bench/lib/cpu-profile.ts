/**
 * Summarises V8 .cpuprofile files (node --cpu-prof): self time by function and by
 * area (our src/ files, each npm package, node internals, GC, idle), so a bench
 * can say what costs what without opening a profiler UI.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function areaOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg && !url.includes('/.cache/')) return pkg[1]!;
  if (url.startsWith('node:')) return url;
  const src = /\/(dist|src)\/(.+)$/.exec(url);
  return src ? `src/${src[2]!.replace(/\.js$/, '.ts')}` : path.basename(url);
}

export async function summariseCpuProfiles(dir: string, log: (line: string) => void): Promise<void> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  log(`\nCPU profiles in ${dir}:`);
  for (const file of files) {
    const profile = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    for (let i = 0; i < profile.samples.length; i++) {
      selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0));
    }
    let total = 0;
    let idle = 0;
    const byFunction = new Map<string, number>();
    const byArea = new Map<string, number>();
    for (const [id, us] of selfUs) {
      const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
      if (functionName === '(idle)') {
        idle += us;
        continue;
      }
      total += us;
      const area = areaOf(url, functionName);
      const fn = `${functionName || '(anonymous)'} ${area}${url ? `:${lineNumber + 1}` : ''}`;
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
      byArea.set(area, (byArea.get(area) ?? 0) + us);
    }
    const top = (m: Map<string, number>, n: number) =>
      [...m.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, n)
        .map(([k, v]) => `    ${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`);
    log(`  ${file}: ${(total / 1000).toFixed(0)} ms busy, ${(idle / 1000).toFixed(0)} ms idle (main thread)`);
    log('   by area (self time):');
    for (const line of top(byArea, 14)) log(line);
    log('   by function (self time):');
    for (const line of top(byFunction, 18)) log(line);
  }
}
