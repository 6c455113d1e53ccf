/**
 * Acks of unknown actuations are a client mistake: counted every time
 * (`iotws_device_acks_total{outcome="unknown"}`), logged a few per window (log-sampler).
 * Shown to fail without the sampler: with one `warn` per ack (the code before), 50 lines.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAuthenticated } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { captureLog } from '../helpers/log-capture.js';
import { mint } from '../helpers/keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let db: TestDatabase;
let server: TestServer;
const { sink, lines } = captureLog();

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(db, { LOG_LEVEL: 'info' }, { logDestination: sink });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

describe('acks for actuations that are not the device\'s', () => {
  it('are counted each time and logged only a few times per window', async () => {
    const device = await connectAuthenticated(server.wsUrl, 'unknown-acker', mint('unknown-acker'));
    for (let i = 0; i < 50; i++) device.send({ type: 'ack', id: crypto.randomUUID(), statusCode: 200 });
    const unknown = async () =>
      (await server.app.metrics.registry.getSingleMetric('iotws_device_acks_total')!.get()).values.find((v) => v.labels.outcome === 'unknown')?.value ?? 0;
    expect(await eventually(unknown, (n) => n >= 50)).toBe(50);
    const logged = lines.filter((l) => l.includes("ack for an actuation that is not this device's"));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.length).toBeLessThanOrEqual(10);
    expect(JSON.parse(logged[0]!)).toMatchObject({ deviceId: 'unknown-acker', kind: 'ack_unknown_actuation' });
    device.close();
  });
});
