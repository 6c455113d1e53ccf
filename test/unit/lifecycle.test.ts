/** The lifecycle's emitter: every listener gets every event in order; one that throws is logged and does not stop the others. */
import { describe, expect, it } from 'vitest';
import { makeLifecycle, transition, type ActuationEvent } from '../../src/actuations/lifecycle.js';
import { makeLogger } from '../../src/logger.js';
import { captureLog } from '../helpers/log-capture.js';

const fields = (n: number) => ({ actuationId: `a-${n}`, deviceId: 'd', seq: n, source: 'rest', createdAt: new Date(0) });

describe('lifecycle', () => {
  it('builds typed events: type from the status, nulls for what the transition does not have', () => {
    const at = new Date(1000);
    expect(transition('acked', 'ack_up_to', { ...fields(1), statusCode: 200 }, at)).toEqual({
      type: 'actuation.acked',
      actuationId: 'a-1',
      deviceId: 'd',
      seq: 1,
      status: 'acked',
      source: 'rest',
      via: 'ack_up_to',
      createdAt: new Date(0),
      at,
      statusCode: 200,
      reasonPhrase: null,
      sessionId: null,
      instanceId: null,
      supersededBy: null,
    });
  });

  it('gives every listener every event in order; a throwing listener is logged, the others still run; unsubscribe stops one', () => {
    const logs = captureLog();
    const lifecycle = makeLifecycle(makeLogger({ level: 'error' }, logs.sink));
    const first: string[] = [];
    const last: string[] = [];
    lifecycle.subscribe((e) => first.push(e.actuationId));
    const stop = lifecycle.subscribe(() => {
      throw new Error('listener bug');
    });
    lifecycle.subscribe((e) => last.push(e.actuationId));
    const events: ActuationEvent[] = [transition('queued', 'submit', fields(1), new Date()), transition('sent', 'direct_send', fields(1), new Date())];
    lifecycle.committed(events);
    expect(first).toEqual(['a-1', 'a-1']);
    expect(last).toEqual(['a-1', 'a-1']);
    expect(logs.json().filter((l) => l.msg === 'lifecycle: a listener failed; the others still run')).toHaveLength(2);
    stop();
    lifecycle.committed([transition('acked', 'ack', fields(2), new Date())]);
    expect(last).toEqual(['a-1', 'a-1', 'a-2']);
    expect(logs.lines).toHaveLength(2);
  });
});
