/** Keeps the README's protocol, error and configuration tables in step with the code. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, LIBRARY_CLOSE_CODES, RESPONSE_CODES } from '../../src/gateway/protocol.js';
import { API_ERRORS } from '../../src/http/errors.js';

const root = path.resolve(import.meta.dirname, '../..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const configSource = fs.readFileSync(path.join(root, 'src/config/config.ts'), 'utf8');

/** First-column cells of the markdown table that follows `heading`. */
function tableKeys(afterText: string): string[] {
  const start = readme.indexOf(afterText);
  expect(start, `README has "${afterText}"`).toBeGreaterThan(-1);
  const lines = readme.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const rows = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|')[1]!.trim());
  }
  return rows;
}

describe('README', () => {
  it('lists every server response code', () => {
    const documented = tableKeys('Server → device').map(Number);
    expect(documented.sort()).toEqual(Object.values(RESPONSE_CODES).map((c) => c.code).sort());
  });

  it('lists every close code', () => {
    const documented = tableKeys('Close codes:').map(Number);
    expect(documented.sort()).toEqual(Object.values(CLOSE_CODES).map((c) => c.code).sort());
  });

  it('lists every REST error code with its status', () => {
    const rows = tableKeys('Errors are `{"error":{"code","message"}}`');
    const start = readme.indexOf('Errors are `{"error":{"code","message"}}`');
    const table = readme.slice(start, readme.indexOf('\n## ', start));
    for (const [code, { status }] of Object.entries(API_ERRORS)) {
      expect(table, `${code} in the README`).toMatch(new RegExp(`\\| ${status} \\|[^\\n]*\`${code}\``));
    }
    expect(rows.length).toBeGreaterThan(0);
  });

  it('lists every close code that comes from the ws library or the network', () => {
    const documented = tableKeys('Closes that come from the WebSocket library').map(Number);
    for (const { code } of Object.values(LIBRARY_CLOSE_CODES)) expect(documented, `${code} in the table`).toContain(code);
  });

  it('says why each dependency is there', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    const documented = tableKeys('## Dependencies and why').join(' ');
    for (const name of Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })) {
      const named = name.startsWith('@types/') ? '`@types/*`' : `\`${name}\``;
      expect(documented, `${name} in "Dependencies and why"`).toContain(named);
    }
  });

  it('documents every environment variable the configuration reads', () => {
    const read = new Set([...configSource.matchAll(/\(env, '([A-Z_]+)'/g)].map((m) => m[1]!));
    read.add('NODE_ENV');
    read.add('VCAP_SERVICES');
    const documented = tableKeys('Environment variables').join(' ');
    for (const variable of read) expect(documented, `${variable} in the configuration table`).toContain(`\`${variable}\``);
  });
});
