import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { bulkResultsJson, submittedActuationResponse, type BulkResult } from '../../src/http/serializers.js';
import type { ActuationSummary } from '../../src/actuations/types.js';

describe('compiled response serializers', () => {
  it('write a submission summary exactly as JSON.stringify does (Dates, null, strings to escape)', async () => {
    const answers = [
      { id: '0190c3f0-0000-7000-8000-000000000000', deviceId: 'd"\\\u2028x', seq: 3, status: 'sent', createdAt: new Date('2026-01-01T00:00:00.123Z'), expiresAt: null },
      { id: '0190c3f0-0000-7000-8000-000000000001', deviceId: 'lamp-1', seq: 9007199254740991, status: 'queued', createdAt: '2026-01-01T00:00:00.123Z', expiresAt: new Date(0) },
    ];
    const app = Fastify({ logger: false });
    let next = 0;
    app.get('/', { schema: { response: submittedActuationResponse } }, async (_req, reply) => reply.code(next % 2 === 0 ? 202 : 200).send(answers[next++]));
    for (const answer of answers) expect((await app.inject('/')).body).toBe(JSON.stringify(answer));
    await app.close();
  });

  it('write a bulk answer exactly as JSON.stringify does (shared and changing dates, null, errors, strings to escape)', () => {
    const summary = (n: number, createdAt: Date, expiresAt: Date | null, deviceId = `lamp-${n}`): ActuationSummary => ({
      id: `0190c3f0-0000-7000-8000-00000000000${n}`,
      deviceId,
      seq: n,
      status: n % 2 === 0 ? 'sent' : 'queued',
      createdAt,
      expiresAt,
    });
    const t = new Date('2026-01-01T00:00:00.123Z');
    const later = new Date('2026-01-02T00:00:00.999Z');
    const results: BulkResult[] = [
      { index: 0, status: 202, actuation: summary(0, t, later) },
      { index: 1, status: 202, actuation: summary(1, new Date(t.getTime()), new Date(later.getTime())) },
      { index: 2, status: 400, error: { code: 'VALIDATION_FAILED', message: 'item.params[0]: "quoted" \\ \u2028 \ud800' } },
      { index: 3, status: 200, actuation: summary(3, later, null, 'd"\\\u2028x\u0001') },
      { index: 4, status: 202, actuation: summary(4, t, new Date(0)) },
      { index: 5, status: 202, actuation: summary(5, new Date(Number.NaN), null) },
      { index: 6, status: 429, error: { code: 'QUEUE_FULL', message: 'Device "x" already has 3 queued actuations' } },
      { index: 7, status: 202, actuation: summary(7, t, later) },
    ];
    expect(bulkResultsJson({ results })).toBe(JSON.stringify({ results }));
    expect(bulkResultsJson({ results: [] })).toBe(JSON.stringify({ results: [] }));
    // Not a summary as insertActuations builds it: written by JSON.stringify, never cut.
    const odd = [{ index: 0, status: 202, actuation: { ...summary(0, t, null), createdAt: '2026-01-01T00:00:00.123Z' } }] as unknown as BulkResult[];
    expect(bulkResultsJson({ results: odd })).toBe(JSON.stringify({ results: odd }));
  });
});
