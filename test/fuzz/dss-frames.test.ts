/**
 * Fuzzing DSS frames (fast-check): the frame parser on its own (any bytes, lengths that
 * lie, joined frames, unicode), and the whole path through a fake DSS server (the real
 * simulator, raw frames and odd events) into the real app, rules and database.
 *
 * Properties: the parser never throws and says what each frame is (an event, a
 * heartbeat, or invalid with a code of DSS_ERRORS), and reads back what was framed; the
 * stream client skips what it cannot use and moves on: an ordinary event sent after the
 * fuzzed ones still becomes its actuation, on a stream that stays connected.
 * Seed and run count: see fuzz-options.ts.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DSS_ERRORS } from '../../src/dss/errors.js';
import { formatFrame, HEARTBEAT_FRAME, parseFrames, type Frame } from '../../src/dss/frame-parser.js';
import { startDssSimulator, type DssSimulator } from '../../src/dss/simulator/simulator.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { edgeJson, edgeString, runs, wrongType, fuzzTimeout } from './fuzz-options.js';

const frameText = (frames: Frame[]) => JSON.stringify(frames);

function wellFormed(frames: Frame[]): string | null {
  for (const f of frames) {
    if (f.kind === 'invalid' && !(f.code in DSS_ERRORS)) return `unknown code ${f.code}`;
    if (f.kind === 'event' && (typeof f.rawEvent !== 'object' || f.rawEvent === null || Array.isArray(f.rawEvent))) return 'an event that is not an object';
    if (!['event', 'heartbeat', 'invalid'].includes(f.kind)) return `unknown kind ${(f as { kind: string }).kind}`;
  }
  return null;
}

const jsonObject = fc.dictionary(edgeString(12), edgeJson, { maxKeys: 6 });

describe('DSS frame parser fuzzing', () => {
  it('never throws on any bytes or text, and classifies every frame', () => {
    const message = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.string({ unit: 'binary', maxLength: 200 }),
      // Prefixes that lie: any LEN, any number of digits, before any payload.
      fc.tuple(fc.oneof(fc.nat(), fc.integer(), fc.constantFrom(0, 2 ** 31, 2 ** 53, Number.MAX_SAFE_INTEGER)), fc.string({ maxLength: 60 })).map(([n, p]) => `${n}|${p}`),
      fc.tuple(fc.stringMatching(/^\d{0,14}$/), fc.constantFrom('|', '||', ''), jsonObject.map((o) => JSON.stringify(o))).map(([d, bar, json]) => d + bar + json),
      fc.array(fc.oneof(jsonObject.map((o) => formatFrame(JSON.stringify(o))), fc.constant(HEARTBEAT_FRAME), fc.string({ maxLength: 10 })), { maxLength: 5 }).map((parts) => parts.join('')),
    );
    fc.assert(
      fc.property(message, (m) => {
        const frames = parseFrames(m);
        const problem = wellFormed(frames);
        if (problem) throw new Error(`${problem}: ${frameText(frames)}`);
      }),
      runs(5_000),
    );
  }, fuzzTimeout(30_000));

  it('reads back any JSON object framed as DSS frames it (LEN in UTF-8 bytes), alone or joined with others and heartbeats', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof({ weight: 4, arbitrary: jsonObject }, { weight: 1, arbitrary: fc.constant(null) }), { minLength: 1, maxLength: 5 }), (items) => {
        const text = items.map((o) => (o === null ? HEARTBEAT_FRAME : formatFrame(JSON.stringify(o)))).join('');
        const frames = parseFrames(text);
        // JSON text compared: an object's -0 reads back as 0, a lone surrogate as itself.
        const expected = items.map((o) => (o === null ? { kind: 'heartbeat' } : { kind: 'event', rawEvent: JSON.parse(JSON.stringify(o)) as unknown }));
        expect(JSON.stringify(frames)).toBe(JSON.stringify(expected));
      }),
      runs(3_000),
    );
  }, fuzzTimeout(30_000));
});

const KEY = 'fuzz0123456789abcdef0123456789ab';
const DSS_ENV = {
  DSS_SUPERVISOR_INTERVAL_MS: '200',
  DSS_RECONNECT_MIN_MS: '50',
  DSS_RECONNECT_MAX_MS: '400',
  DSS_FLUSH_INTERVAL_MS: '100',
  DSS_RULES_REFRESH_MS: '100',
  DSS_IDLE_TIMEOUT_MS: '10000',
};

describe('DSS stream fuzzing through a fake DSS server', () => {
  let db: TestDatabase;
  let sim: DssSimulator;
  let server: TestServer;
  let streamId: string;
  let ruleId: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    sim = await startDssSimulator({ streamKeys: [KEY], heartbeatMs: 200 });
    server = await startTestServer(db, DSS_ENV);
    const rule = await server.api('/v1/rules', {
      method: 'POST',
      json: {
        name: 'fuzz',
        match: { eventType: 'datapoint', dsn: 'FZ' },
        action: { deviceId: 'fz-{{dsn}}', componentId: 'c', command: 'SET', params: [{ name: 'v', value: '{{value}}' }, { name: 'p', value: '{{property_name}}' }] },
      },
    });
    expect(rule.status).toBe(201);
    ruleId = ((await rule.json()) as { id: string }).id;
    const res = await server.api('/v1/dss/streams', { method: 'POST', json: { name: 'fuzz', url: sim.streamUrl, streamKey: KEY } });
    expect(res.status).toBe(201);
    streamId = ((await res.json()) as { id: string }).id;
    await eventually(() => connected(), Boolean);
  });
  afterAll(async () => {
    await server?.close();
    await sim?.close();
    await db?.drop();
  });

  async function connected(): Promise<boolean> {
    const view = (await (await server.api(`/v1/dss/streams/${streamId}`)).json()) as { status: { connected: boolean; holder: string | null } };
    return view.status.connected && view.status.holder === server.config.instanceId;
  }

  /** Raw frames and events a broken or hostile DSS peer might send. */
  const oddInput = fc.oneof(
    fc.string({ maxLength: 80 }).map((text) => ({ raw: text })),
    fc.uint8Array({ maxLength: 40 }).map((b) => ({ raw: Buffer.from(b).toString('latin1') })),
    fc.tuple(fc.nat({ max: 10_000 }), jsonObject).map(([n, o]) => ({ raw: `${n}|${JSON.stringify(o)}` })),
    jsonObject.map((o) => ({ raw: formatFrame(JSON.stringify({ seq: '1', ...o })) })),
    // Events of the rule's device with any value and property: the value goes into the actuation's params.
    fc
      .record({ value: fc.oneof(edgeString(80), edgeJson, wrongType), property: fc.oneof(fc.constant('p'), edgeString(20).filter((s) => s.length > 0)), baseType: fc.constantFrom('string', 'integer', 'boolean', 'decimal', 'x') })
      .map((e) => ({ event: { type: 'datapoint' as const, dsn: 'FZ', ...e } })),
    // DSS-shaped events with fields of the wrong type.
    fc.dictionary(fc.constantFrom('event_type', 'dsn', 'oem_model', 'property_name', 'base_type', 'oem_id'), fc.oneof(edgeString(20), wrongType)).map((metadata) => ({
      metadata: { event_type: 'datapoint', dsn: 'FZ', ...metadata },
    })),
  );

  let sentinel = 0;
  it('skips what it cannot use and acts on the next ordinary event, on a stream that stays connected', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(oddInput, { minLength: 1, maxLength: 5 }), async (inputs) => {
        for (const input of inputs) {
          if ('raw' in input) sim.sendRaw(KEY, input.raw);
          else if ('event' in input) sim.emit(KEY, input.event);
          else sim.emit(KEY, input as { metadata: Record<string, unknown> });
        }
        const mark = `sentinel-${++sentinel}`;
        sim.emit(KEY, { type: 'datapoint', dsn: 'FZ', property: 'p', baseType: 'string', value: mark });
        const rows = await eventually(
          async () => (await db.pool.query(`select 1 from actuations where source->>'ruleId' = $1 and params @> $2::jsonb`, [ruleId, JSON.stringify([{ name: 'v', value: mark }])])).rowCount,
          (n) => n === 1,
          5_000,
          10,
        );
        expect(rows).toBe(1);
        expect(await connected()).toBe(true);
      }),
      // A stream that stalled stays stalled: later cases would only repeat the first failure, so no shrinking.
      runs(60, { endOnFailure: true }),
    );
  }, fuzzTimeout(120_000));
});
