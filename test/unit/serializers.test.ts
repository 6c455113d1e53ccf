import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { submittedActuationResponse } from '../../src/http/serializers.js';

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
});
