import { describe, expect, it } from 'vitest';
import { startDssSimulator } from '../../src/dss/simulator/simulator.js';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, TEST_CREDENTIALS, useTestServer, type TestServer } from '../helpers/server.js';

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
    expect(text).toMatch(/^iotws_db_pool_connections\{state="idle"\} \d+$/m);
    expect(text).toMatch(/^iotws_db_pool_connections\{state="in_use"\} \d+$/m);
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

describe('metrics that fit Prometheus', () => {
  it('gives each meaning its own metric: pool connections by state (summing to the open ones), waiting callers apart', async () => {
    const text = await scrape();
    expect(text).not.toMatch(/iotws_db_pool_connections\{state="(total|waiting_clients)"\}/);
    expect(text).toMatch(/^iotws_db_pool_waiting_clients \d+$/m);
    const open = value(text, 'iotws_db_pool_connections{state="idle"}') + value(text, 'iotws_db_pool_connections{state="in_use"}');
    expect(open).toBeGreaterThan(0);
    // The scrape itself holds one (the queued count): a connection in use while it is read.
    expect(value(text, 'iotws_db_pool_connections{state="in_use"}')).toBeGreaterThanOrEqual(0);
    // A deployment-wide gauge says so, so that dashboards do not add up the instances.
    expect(text).toMatch(/^# HELP iotws_actuations_queued .*do not sum across instances/m);
  });

  it('counts and times HTTP requests by route template, method and status class, unmatched ones under one label', async () => {
    // The server is shared with the tests above: compare with what it had counted before.
    const before = await scrape();
    const grew = (x: string, series: string) => value(x, series) - value(before, series);
    await t.server.api('/v1/devices/h-1/actuations', { method: 'POST', json: { componentId: 'c', command: 'x', params: [] } });
    await t.server.api('/v1/devices/h-2/actuations', { method: 'POST', json: { componentId: 'c', command: 'x', params: [] } });
    await t.server.api('/v1/actuations/00000000-0000-7000-8000-000000000000');
    await t.server.api('/v1/no-such-thing/123');
    await t.server.api('/v1/no-such-thing/456');
    await fetch(`${t.server.httpUrl}/v1/devices`); // no credentials: refused before routing
    const text = await eventually(
      () => scrape(),
      (x) => grew(x, 'iotws_http_requests_total{route="/v1/devices/:deviceId/actuations",method="POST",status_class="2xx"}') === 2,
    );
    expect(grew(text, 'iotws_http_requests_total{route="/v1/devices/:deviceId/actuations",method="POST",status_class="2xx"}')).toBe(2);
    expect(grew(text, 'iotws_http_requests_total{route="/v1/actuations/:id",method="GET",status_class="4xx"}')).toBe(1);
    expect(grew(text, 'iotws_http_requests_total{route="unmatched",method="GET",status_class="4xx"}')).toBe(3);
    expect(grew(text, 'iotws_http_request_duration_seconds_count{route="/v1/devices/:deviceId/actuations",method="POST",status_class="2xx"}')).toBe(2);
    // The scrapes themselves are counted under their route too.
    expect(grew(text, 'iotws_http_requests_total{route="/metrics",method="GET",status_class="2xx"}')).toBeGreaterThanOrEqual(1);
    // No series carries a concrete path.
    expect(text).not.toMatch(/route="[^"]*(h-1|h-2|no-such-thing|00000000)/);
  });

  it('lets the read-only metrics credential scrape /metrics and do nothing else', async () => {
    const metricsUser = { username: 'scraper', password: 'scrape-only-password' };
    const s = await startTestServer(t.db, { METRICS_USERNAME: metricsUser.username, METRICS_PASSWORD: metricsUser.password });
    const basic = (c: { username: string; password: string }) => ({ authorization: `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}` });
    try {
      const scraped = await fetch(`${s.httpUrl}/metrics`, { headers: basic(metricsUser) });
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('iotws_connected_devices');
      expect((await fetch(`${s.httpUrl}/metrics`, { headers: basic(TEST_CREDENTIALS) })).status).toBe(200);
      expect((await fetch(`${s.httpUrl}/metrics`, { headers: basic({ ...metricsUser, password: 'wrong' }) })).status).toBe(401);
      expect((await fetch(`${s.httpUrl}/metrics`)).status).toBe(401);
      // Nothing else: no reads, no commands to devices, no DSS configuration.
      expect((await fetch(`${s.httpUrl}/v1/devices`, { headers: basic(metricsUser) })).status).toBe(401);
      const post = await fetch(`${s.httpUrl}/v1/devices/mc-1/actuations`, {
        method: 'POST',
        headers: { ...basic(metricsUser), 'content-type': 'application/json' },
        body: JSON.stringify({ componentId: 'c', command: 'x', params: [] }),
      });
      expect(post.status).toBe(401);
      expect((await fetch(`${s.httpUrl}/v1/dss/streams`, { headers: basic(metricsUser) })).status).toBe(401);
      const { rows } = await t.db.pool.query(`select count(*)::int as n from actuations where device_id = 'mc-1'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('drops a DSS stream\'s series when the stream is deleted', async () => {
    const key = 'ab0123456789abcdef0123456789abcd';
    const sim = await startDssSimulator({ streamKeys: [key], heartbeatMs: 100 });
    const s = await startTestServer(t.db, { DSS_SUPERVISOR_INTERVAL_MS: '100', DSS_RECONNECT_MIN_MS: '50', DSS_RECONNECT_MAX_MS: '200' });
    try {
      const res = await s.api('/v1/dss/streams', { method: 'POST', json: { name: 'm', url: sim.streamUrl, streamKey: key } });
      expect(res.status).toBe(201);
      const { id } = (await res.json()) as { id: string };
      const series = `iotws_dss_frames_total{stream="${id}",kind="heartbeat"}`;
      const before = await eventually(() => scrape(s), (x) => value(x, series) > 0);
      expect(value(before, series)).toBeGreaterThan(0);
      expect((await s.api(`/v1/dss/streams/${id}`, { method: 'DELETE' })).status).toBe(204);
      const after = await eventually(() => scrape(s), (x) => !x.includes(`stream="${id}"`));
      expect(after).not.toContain(`stream="${id}"`);
    } finally {
      await s.close();
      await sim.close();
    }
  });
});
