import { describe, expect, it } from 'vitest';
import { connectAuthenticated, connectDevice } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

// No poll within the test (DISPATCH_POLL_MS 10 min): what reaches the device gets there by a
// nudge or a claim at connect, nothing else.
const t = useTestServer({ DISPATCH_POLL_MS: '600000', BACKLOG_RATE: '10000' });

const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };

async function openSessionOf(deviceId: string) {
  const { rows } = await t.db.pool.query<{ id: number }>('select id from device_sessions where device_id = $1 and disconnected_at is null', [deviceId]);
  return rows;
}

describe('a device connecting with nothing pending (no backlog claim)', () => {
  it('gets an actuation posted for it while its session statement was running, exactly once', async () => {
    const deviceId = 'race-1';
    // Registered once (the `devices` row the session statement will wait on), then gone.
    const first = await connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
    first.close();
    await eventually(() => openSessionOf(deviceId), (rows) => rows.length === 0);

    // Hold the device's registry row: its next session statement takes its snapshot (no
    // actuation yet), then waits here, so the POST below commits after that snapshot.
    const locker = await t.db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from devices where device_id = $1 for no key update', [deviceId]);
      const device = await connectDevice(t.server.wsUrl);
      device.send({ type: 'device', deviceId, deviceToken: mint(deviceId) });
      await eventually(
        () =>
          t.db.pool.query(
            `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%insert into device_sessions%'`,
          ),
        (r) => r.rowCount === 1,
      );
      const res = await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command });
      expect(res.status).toBe(202);
      const posted = (await res.json()) as { id: string; status: string };
      // Not connected yet: queued, and its nudge arrives before the device is in the dispatcher.
      expect(posted.status).toBe('queued');
      await locker.query('commit');

      expect(await device.next(5_000)).toMatchObject({ code: 200 });
      // Checked to fail without the nudge log (nudgedSince always false): no message within 5 s.
      expect(await device.next(5_000)).toMatchObject({ code: 1024, id: posted.id, seq: 1 });
      const row = await eventually(
        () => t.db.pool.query<{ status: string; attempts: number }>('select status, attempts from actuations where id = $1', [posted.id]),
        (r) => r.rows[0]?.status === 'sent',
      );
      expect(row.rows[0]).toMatchObject({ status: 'sent', attempts: 1 });
      // Once: nothing more arrives (no second claim or direct send of it).
      await new Promise((r) => setTimeout(r, 500));
      expect(device.pending()).toEqual([]);
      device.close();
    } finally {
      await locker.query('rollback').catch(() => undefined);
      locker.release();
    }
  });

  it('is live at once: the next POST is sent in its own transaction, and a queued one still arrives on connect', async () => {
    const deviceId = 'race-2';
    const device = await connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
    // Nothing pending at connect: LIVE without waiting for a backlog tick, so a POST right after the 200 is a direct send.
    const res = await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command });
    const posted = (await res.json()) as { id: string; status: string };
    expect(posted.status).toBe('sent');
    expect(await device.next(5_000)).toMatchObject({ code: 1024, id: posted.id });
    device.close();
    await eventually(() => openSessionOf(deviceId), (rows) => rows.length === 0);

    // Something pending at connect: the backlog claim sends it (the poll cannot, within this test).
    const queued = (await (await t.server.api(`/v1/devices/${deviceId}/actuations`, { method: 'POST', json: command })).json()) as { id: string; status: string };
    expect(queued.status).toBe('queued');
    const again = await connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
    expect(await again.next(5_000)).toMatchObject({ code: 1024, id: queued.id, seq: 2 });
    again.close();
  });
});
