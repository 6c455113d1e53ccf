import { describe, expect, it } from 'vitest';
import { connectAuthenticated } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';

// The poll is the only path here: no NOTIFY, no nudge. Checked to fail (the device gets
// nothing, `device.next` times out) with DISPATCH_POLL_MS: '600000'.
const POLL_MS = '300';
const t = useTestServer({ DISPATCH_POLL_MS: POLL_MS, BACKLOG_RATE: '10000' });

describe('the dispatcher poll (missed notifications)', () => {
  it('delivers a queued actuation nobody announced to a live device, and only once', async () => {
    const deviceId = 'poll-1';
    const device = await connectAuthenticated(t.server.wsUrl, deviceId, mint(deviceId));
    await eventually(() => t.db.pool.query(`select 1 from device_sessions where device_id = $1 and disconnected_at is null`, [deviceId]), (r) => r.rowCount === 1);
    // Out of the backlog lane first (nothing pending): a couple of backlog ticks.
    await new Promise((r) => setTimeout(r, 300));
    // Written behind the server's back: as if its NOTIFY had been lost.
    const { rows } = await t.db.pool.query<{ id: string }>(
      `insert into actuations (id, device_id, seq, status, gateway_id, component_id, command, params, source)
       values (gen_random_uuid(), $1, 1, 'queued', $1, 'c', 'set', '[]', '{"kind":"rest"}') returning id`,
      [deviceId],
    );
    const message = await device.next(10_000);
    expect(message).toMatchObject({ code: 1024, id: rows[0]!.id, seq: 1 });
    const status = await eventually(
      () => t.db.pool.query<{ status: string; attempts: number }>('select status, attempts from actuations where id = $1', [rows[0]!.id]),
      (r) => r.rows[0]?.status === 'sent',
    );
    expect(status.rows[0]).toMatchObject({ status: 'sent', attempts: 1 });
    // Several more polls: nothing more is sent (the row is no longer queued).
    await new Promise((r) => setTimeout(r, 3 * Number(POLL_MS)));
    expect(device.pending()).toEqual([]);
    device.close();
  });
});
