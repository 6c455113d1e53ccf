/**
 * Builds what the bench runs, into a private directory under node_modules/.cache
 * (so the shared `dist/` is neither used half-built nor overwritten, and module
 * resolution still finds node_modules): the server with the project's own build
 * (`tsc -p tsconfig.build.json`, the same output `npm start` runs) plus a copy of
 * `migrations/` where the built migrator looks for it, and the bare reference
 * servers (bench/bare-*.ts) transpiled the same way. All run under plain `node`, no loader.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { onCleanup, runTracked } from './processes.js';

export interface BenchBuild {
  serverMain: string;
  bareServer: string;
  /** bench/bare-actuation-server.ts: express POST -> ws push, the actuations bench's reference. */
  bareActuationServer: string;
  /** bench/bare-node-server.ts: the same on bare node:http, the harder reference. */
  bareNodeServer: string;
}

export async function buildForBench(root: string): Promise<BenchBuild> {
  const dir = path.join(root, 'node_modules', '.cache', `iotws-bench-${process.pid}`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  // Under node_modules the package scope search stops: say ESM here.
  await fs.writeFile(path.join(dir, 'package.json'), '{ "type": "module", "private": true }\n');

  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, output } = await runTracked(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', path.join(dir, 'dist')], root, 180_000);
  if (code !== 0) {
    // tsc still emits on type errors (the shared tree may be mid-edit elsewhere): run what was
    // emitted, but say so; without an emitted entry point there is nothing to bench.
    const emitted = await fs.stat(path.join(dir, 'dist', 'main.js')).then(() => true, () => false);
    if (!emitted) throw new Error(`server build failed (tsc exit ${code}): ${output}`);
    const errors = output.split('\n').filter((l) => /error TS/.test(l));
    process.stdout.write(`warning: the server build reported ${errors.length} type error(s), running the emitted JavaScript; first: ${errors[0] ?? output.slice(0, 300)}\n`);
  }
  // dist/db/migrate.js resolves ../../migrations.
  await fs.cp(path.join(root, 'migrations'), path.join(dir, 'migrations'), { recursive: true });

  const transpile = async (name: string): Promise<string> => {
    const source = await fs.readFile(path.join(root, 'bench', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    const file = path.join(dir, `${name}.mjs`);
    await fs.writeFile(file, outputText);
    return file;
  };
  return { serverMain: path.join(dir, 'dist', 'main.js'), bareServer: await transpile('bare-server'), bareActuationServer: await transpile('bare-actuation-server'),
    bareNodeServer: await transpile('bare-node-server'),
  };
}

/**
 * The server as it was at git `ref` (`--before REF` of the actuations bench): src/,
 * migrations/ and the tsconfigs taken from git into a private dir under
 * node_modules/.cache (so node_modules still resolves) and built the same way, so a change
 * can be measured against what it replaces in one run, on the same loaded machine.
 */
export async function buildRefForBench(root: string, ref: string): Promise<string> {
  const dir = path.join(root, 'node_modules', '.cache', `iotws-bench-${process.pid}-before`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  const archive = path.join(dir, 'tree.tar');
  const git = await runTracked('git', ['-C', root, 'archive', '--format=tar', '-o', archive, ref, 'src', 'migrations', 'tsconfig.json', 'tsconfig.build.json'], root, 60_000);
  if (git.code !== 0) throw new Error(`git archive ${ref} failed: ${git.output}`);
  const tar = await runTracked('tar', ['-xf', archive, '-C', dir], root, 60_000);
  if (tar.code !== 0) throw new Error(`tar failed: ${tar.output}`);
  await fs.writeFile(path.join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, output } = await runTracked(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.build.json')], dir, 180_000);
  const main = path.join(dir, 'dist', 'main.js');
  if (code !== 0 && !(await fs.stat(main).then(() => true, () => false))) throw new Error(`build of ${ref} failed (tsc exit ${code}): ${output}`);
  return main;
}
