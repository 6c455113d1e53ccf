import pg from 'pg';
import fs from 'node:fs';
import { openSessions } from '../src/gateway/sessions-sql.js';
import { namedStatement } from '../src/db/named-statement.js';
const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/connect_exp' });
await client.connect();
const pid = (await client.query('select pg_backend_pid() as p')).rows[0].p;
const cpuNs = () => Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
const named = { query: (text: string, values: unknown[]) => client.query({ ...namedStatement('exp', text), values }) } as any;
const unnamed = { query: (text: string, values: unknown[]) => client.query(text, values) } as any;
let next = 0;
const sizes = process.argv.slice(2).map(Number);
for (const round of [1, 2]) for (const size of sizes) for (const [label, db] of [['unnamed', unnamed], ['named', named]] as const) {
  const batches = Math.max(5, Math.ceil(3000 / size));
  const t0 = performance.now(); const c0 = cpuNs();
  for (let b = 0; b < batches; b++) {
    const items = Array.from({ length: size }, () => ({ deviceId: `exp-${next++}`, accountId: null, remoteAddress: '127.0.0.1' }));
    await openSessions(db, 'exp-instance', items);
  }
  const dev = batches * size;
  console.log(`round ${round} size ${String(size).padStart(4)} ${label.padEnd(8)} PG backend CPU ${((cpuNs() - c0) / 1000 / dev).toFixed(1).padStart(6)} µs/dev, wall ${((performance.now() - t0) * 1000 / dev).toFixed(1).padStart(6)} µs/dev, ${((performance.now() - t0) / batches).toFixed(2)} ms/stmt`);
}
await client.end();
