import { describe, expect, it } from 'vitest';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, useTestServer, type TestServer } from '../helpers/server.js';

const t = useTestServer();

async function scrape(s: TestServer = t.server): Promise<string> {
  const res = await s.api('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('GET /metrics', () => {
  it('requires credentials when METRICS_PORT is not set', async () => {
    const res = await fetch(`${t.server.httpUrl}/metrics`);
    expect(res.status).toBe(401);
  });

  it('counts authentications, sessions, actuation transitions and latencies', async () => {
    const bad = await connectDevice(t.server.wsUrl);
    bad.send({ type: 'device', deviceId: 'm-1', deviceToken: mint('someone-else') });
    await bad.closed;
    const device = await connectAuthenticated(t.server.wsUrl, 'm-1', mint('m-1'));
    const res = await t.server.api('/v1/devices/m-1/actuations', { method: 'POST', json: { componentId: 'c', command: 'x', params: [] } });
    const { id } = (await res.json()) as { id: string };
    await device.next();
    device.send({ type: 'ack', id, statusCode: 200 });
    const text = await eventually(() => scrape(), (t) => value(t, 'iotws_actuations_total{source="rest",status="acked"}') === 1);
    expect(value(text, 'iotws_device_authentications_total{result="ok"}')).toBe(1);
    expect(value(text, 'iotws_device_authentications_total{result="sub_mismatch"}')).toBe(1);
    expect(value(text, 'iotws_connected_devices')).toBe(1);
    expect(value(text, 'iotws_sessions_opened_total')).toBe(1);
    expect(value(text, 'iotws_actuations_total{source="rest",status="queued"}')).toBe(1);
    expect(value(text, 'iotws_actuations_total{source="rest",status="sent"}')).toBe(1);
    expect(value(text, 'iotws_actuation_post_to_sent_seconds_count')).toBe(1);
    expect(value(text, 'iotws_actuation_post_to_acked_seconds_count')).toBe(1);
    expect(value(text, 'iotws_actuations_queued')).toBe(0);
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    expect(text).toContain('iotws_db_pool_connections{state="total"}');
    device.close();
    const after = await eventually(() => scrape(), (t) => value(t, 'iotws_sessions_closed_total{code="1000"}') === 1);
    expect(value(after, 'iotws_sessions_closed_total{code="1000"}')).toBe(1);
    expect(value(after, 'iotws_connected_devices')).toBe(0);
  });

  it('serves /metrics unauthenticated on METRICS_PORT only, when set', async () => {
    const { freePort } = await import('../../src/db/embedded-postgres.js');
    const metricsPort = await freePort();
    const separate = await startTestServer(t.db, { METRICS_PORT: String(metricsPort) });
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('iotws_connected_devices');
      expect((await separate.api('/metrics')).status).toBe(404);
    } finally {
      await separate.close();
    }
  });
});
