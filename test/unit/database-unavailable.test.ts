/** db/pool's isDatabaseUnavailable: what becomes `503 DATABASE_UNAVAILABLE` (and an ack retry) and what does not. */
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/db/errors.js';
import { toApiError } from '../../src/http/error-handler.js';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('isDatabaseUnavailable', () => {
  it.each([
    ['refused', withCode('ECONNREFUSED')],
    ['reset', withCode('ECONNRESET')],
    ['refused on every address (AggregateError)', new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], 'connect')],
    ['client-side query timeout', new Error('Query read timeout')],
    ['pool checkout timeout', new Error('timeout exceeded when trying to connect')],
    ['connect timeout', new Error('Connection terminated due to connection timeout', { cause: new Error('Connection terminated unexpectedly') })],
    ['connection lost', new Error('Connection terminated unexpectedly')],
    ['client already broken', new Error('Client has encountered a connection error and is not queryable')],
    ['administrator shutdown (backend terminated)', withCode('57P01')],
    ['statement_timeout', withCode('57014')],
    ['idle_in_transaction_session_timeout', withCode('25P03')],
    ['read-only server after a failover', withCode('25006')],
    ['no connection slots', withCode('53300')],
    ['batch flush deadline', withCode('DATABASE_TIMEOUT')],
    ['wrapped in a cause', new Error('submit failed', { cause: withCode('57P01') })],
  ])('%s: yes', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(true);
    expect(toApiError(err).code).toBe('DATABASE_UNAVAILABLE');
  });

  it.each([
    ['unique violation', withCode('23505')],
    ['invalid text', withCode('22P02')],
    ['a bug', new Error('boom')],
    ['nothing', undefined],
    ['a string', 'Connection terminated'],
  ])('%s: no', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(false);
  });
});
