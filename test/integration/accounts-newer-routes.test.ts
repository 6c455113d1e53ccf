/**
 * API keys limited to accounts on the routes added after accounts (the change feed,
 * webhooks, jobs and schedules, device-token revocation, the audit log), against the real
 * server, PostgreSQL, sockets and a real webhook receiver, with real keys made through
 * `POST /v1/api-keys`: a key of account A (acme), one of account B (globex), one without a
 * limit. A key of A is never told about anything of B (nor of a device without an account,
 * nor of DSS streams); what it cannot reach answers, byte for byte once the id is replaced by
 * a placeholder, as something that does not exist at all.
 *
 * How this was checked to guard the mechanism (each by hand, then put back):
 * - `accountLimit` in src/http/routes/events.ts returning `{}`: the feed tests fail (A gets
 *   B's device and actuation events and the DSS event, live and from the backlog);
 * - `inScope` in src/webhooks/webhooks-sql.ts returning `true` for every scope: the webhook
 *   access test fails (A reads, changes and deletes B's webhook);
 * - the `and not exists (… d.account_id = any($2))` refusal of startDueJob
 *   (src/jobs/jobs-sql.ts) removed: the job test fails (B's device gets an actuation);
 * - `getJob`'s account condition (src/jobs/jobs-sql.ts) made `true`, the revoke-tokens
 *   route's `deviceVisibleSql` replaced by 'true', the `checkActuationAccount` of
 *   POST /v1/jobs removed, `listJobActuations`' `deviceVisibleSql` removed: the test of
 *   each fails;
 * - migration 0017 not applied (events took their account from the actuation's `accountId`
 *   body field): the feed and webhook tests fail both ways (A's own actuations without an
 *   `accountId` never reached A; an actuation of B's device that names `acme` reached A).
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES } from '../../src/events/types.js';
import { connectAuthenticated } from '../helpers/device-client.js';
import { eventually } from '../helpers/eventually.js';
import { mint } from '../helpers/keys.js';
import { useTestServer } from '../helpers/server.js';
import { openSse, type SseClient, type SseEvent } from '../helpers/sse-client.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const t = useTestServer({
  DSS_ENABLED: 'false',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_RETRY_MIN_MS: '50',
  WEBHOOK_RETRY_MAX_MS: '200',
  WEBHOOK_SECRET_KEY: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
  JOBS_POLL_MS: '200',
  JOBS_LEASE_MS: '2000',
});

const SCOPES = ['actuations:write', 'actuations:read', 'devices:read', 'devices:write', 'events:read', 'webhooks:admin', 'jobs:write', 'jobs:read'];
const command = { componentId: 'led-1', command: 'LED.v1.0', params: [{ name: 'LED', value: '1' }] };
const SECRET = 'whsec-accounts-0123456789abcdef';
/** An id nobody has (webhooks, jobs, schedules): the answers for B's things must be the answers for it. */
const MISSING_ID = '00000000-0000-7000-8000-000000000000';
const MISSING_DEVICE = 'acctn-no-such-dev';

type Who = 'A' | 'B' | 'all';
const keys = {} as Record<Who, string>;
const DEVICES = { A: 'acctn-a-dev', A2: 'acctn-a-registered', B: 'acctn-b-dev', none: 'acctn-none-dev' };
const A_DEVICES = [DEVICES.A, DEVICES.A2];

function call(who: Who, path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  return t.server.api(path, { ...init, headers: { authorization: `Bearer ${keys[who]}`, ...(init.headers as Record<string, string> | undefined) } });
}

async function created<T = Record<string, any>>(res: Response): Promise<T> {
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as T;
}

/** Status and body, with `id` replaced by a placeholder: what a caller can tell apart. */
async function seen(res: Response, id: string): Promise<{ status: number; body: string }> {
  return { status: res.status, body: (await res.text()).replaceAll(id, '<id>') };
}

function feed(who: Who, query = ''): Promise<SseClient> {
  return openSse(t.server.port, `/v1/events${query}`, { authorization: `Bearer ${keys[who]}` });
}

const live = {} as Record<Who, SseClient>;
const hooks = {} as Record<Who, { id: string; receiver: WebhookReceiver }>;
/** The last event of the scenario below, for each account: once a subscriber has it, it has been offered everything before. */
const last = { A: '', B: '' };
/** The actuation the unlimited key posted to B's device naming account `acme` in its body. */
let misnamed = '';

async function postActuation(who: Who, deviceId: string, body: Record<string, unknown> = command): Promise<string> {
  const res = await call(who, `/v1/devices/${deviceId}/actuations`, { method: 'POST', json: body });
  expect(res.status, await res.clone().text()).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

beforeAll(async () => {
  for (const [who, accounts] of [['A', ['acme']], ['B', ['globex']], ['all', undefined]] as const) {
    keys[who] = (await created<{ key: string }>(await t.server.api('/v1/api-keys', { method: 'POST', json: { name: `newer ${who}`, scopes: SCOPES, ...(accounts ? { accounts } : {}) } }))).key;
  }
  // Live feeds and webhooks first, so that they see the whole scenario.
  for (const who of ['A', 'B', 'all'] as const) {
    live[who] = await feed(who);
    expect(live[who].status).toBe(200);
    const receiver = await startWebhookReceiver();
    const hook = await created<{ id: string; accounts: string[] | null }>(await call(who, '/v1/webhooks', { method: 'POST', json: { url: receiver.url, events: [...EVENT_TYPES], secret: SECRET } }));
    expect(hook.accounts).toEqual(who === 'A' ? ['acme'] : who === 'B' ? ['globex'] : null);
    hooks[who] = { id: hook.id, receiver };
  }
  // The scenario. Devices record their account from their tokens (one names none); A registers one ahead of it connecting.
  for (const [device, accountId] of [[DEVICES.A, 'acme'], [DEVICES.B, 'globex'], [DEVICES.none, undefined]] as const) {
    const client = await connectAuthenticated(t.server.wsUrl, device, mint(device, accountId ? { accountId } : {}));
    client.close();
  }
  await eventually(() => t.db.pool.query('select 1 from device_sessions where disconnected_at is null'), (r) => r.rowCount === 0);
  expect((await call('A', `/v1/devices/${DEVICES.A2}`, { method: 'PUT', json: { tags: { site: 'berlin' } } })).status).toBe(201);
  // Actuations without an `accountId` in the body: their events belong to the device's account.
  await postActuation('A', DEVICES.A2);
  await postActuation('B', DEVICES.B);
  await postActuation('all', DEVICES.none);
  // The body's `accountId` is what the device is sent, not whose the device is: this is B's.
  misnamed = await postActuation('all', DEVICES.B, { ...command, accountId: 'acme' });
  // A DSS stream event, as the stream trigger (migration 0012) records it: no device, no account.
  await t.db.pool.query(`insert into event_rows (type, data) values ('dss.stream.connected', '{"streamId": "s-1", "name": "acctn", "instanceId": null, "lastSeq": 0}')`);
  last.B = await postActuation('B', DEVICES.B);
  last.A = await postActuation('A', DEVICES.A);
});

afterAll(async () => {
  for (const client of Object.values(live)) client?.close();
  await Promise.all(Object.values(hooks).map((h) => h.receiver.close()));
});

/** What account A may be told of: its devices' events only. */
function onlyA(events: { type: string; data: Record<string, unknown> }[]): void {
  expect(events.length).toBeGreaterThan(0);
  for (const e of events) {
    expect(e.type, JSON.stringify(e)).not.toMatch(/^dss\./);
    expect(A_DEVICES, JSON.stringify(e)).toContain(e.data.deviceId);
    if (e.type.startsWith('actuation.')) expect(e.data.id).not.toBe(misnamed);
  }
}

const hasActuation = (id: string) => (events: SseEvent[]) => events.some((e) => e.json?.type === 'actuation.queued' && e.json.data.id === id);
const summary = (events: { type: string; data: Record<string, unknown> }[]) => events.map((e) => `${e.type} ${String(e.data.deviceId ?? e.data.streamId)}`).sort();

describe('the change feed (GET /v1/events) for a key of one account', () => {
  it('live: A gets its devices\' events (also of one it registered and of actuations without accountId), never B\'s, unowned or DSS ones', async () => {
    const all = await live.all.waitFor(hasActuation(last.A), 20_000);
    const a = await live.A.waitFor(hasActuation(last.A), 20_000);
    const b = await live.B.waitFor(hasActuation(last.B), 20_000);
    onlyA(a.map((e) => e.json));
    expect(summary(a.map((e) => e.json))).toEqual([
      `actuation.queued ${DEVICES.A}`,
      `actuation.queued ${DEVICES.A2}`,
      `device.connected ${DEVICES.A}`,
      `device.disconnected ${DEVICES.A}`,
    ]);
    // B gets its own, the misnamed one included, and nothing of A's.
    expect(b.every((e) => e.json.data.deviceId === DEVICES.B)).toBe(true);
    expect(b.some((e) => e.json.data.id === misnamed)).toBe(true);
    // The key without a limit gets everything, the DSS event too.
    expect(all.some((e) => e.json.type === 'dss.stream.connected')).toBe(true);
    expect(new Set(all.map((e) => e.json.data.deviceId))).toEqual(new Set([...Object.values(DEVICES), undefined]));
  });

  it('backlog (?after=0): the same events as live, in the same order', async () => {
    const a = await live.A.waitFor(hasActuation(last.A), 20_000);
    const backlog = await feed('A', '?after=0');
    try {
      const got = await backlog.waitFor(hasActuation(last.A), 20_000);
      onlyA(got.map((e) => e.json));
      expect(got.map((e) => e.json.id)).toEqual(a.map((e) => e.json.id));
    } finally {
      backlog.close();
    }
    // Filters narrow it, never widen it: asking for DSS types, or for one device, gives A only its own.
    for (const query of ['types=dss.stream.connected,actuation.queued', `deviceId=${DEVICES.A}`]) {
      const narrowed = await feed('A', `?after=0&${query}`);
      try {
        const got = await narrowed.waitFor(hasActuation(last.A), 20_000);
        onlyA(got.map((e) => e.json));
        expect(got.every((e) => e.json.type === 'actuation.queued' || e.json.data.deviceId === DEVICES.A)).toBe(true);
      } finally {
        narrowed.close();
      }
    }
  });
});

describe('webhooks of a key of one account', () => {
  it('receive only that account\'s events', async () => {
    await eventually(() => hooks.A.receiver.received, (r) => r.some((d) => d.body.type === 'actuation.queued' && d.body.data.id === last.A), 20_000);
    await eventually(() => hooks.B.receiver.received, (r) => r.some((d) => d.body.type === 'actuation.queued' && d.body.data.id === last.B), 20_000);
    await eventually(() => hooks.all.receiver.received, (r) => r.some((d) => d.body.type === 'actuation.queued' && d.body.data.id === last.A), 20_000);
    const a = hooks.A.receiver.received.map((d) => d.body);
    onlyA(a);
    expect(summary(a)).toEqual(summary((await live.A.waitFor(hasActuation(last.A))).map((e) => e.json)));
    expect(hooks.B.receiver.received.every((d) => d.body.data.deviceId === DEVICES.B)).toBe(true);
    expect(hooks.all.receiver.received.some((d) => d.body.type === 'dss.stream.connected')).toBe(true);
    // What was delivered to A's endpoint is all its deliveries list shows (once recorded: the sender records 2xx outcomes
    // behind its sending, outcome-recorder.ts).
    const delivered = a.map((e) => e.id).sort();
    const listed = await eventually(
      async () => ((await (await call('A', `/v1/webhooks/${hooks.A.id}/deliveries`)).json()) as { items: { eventId: number }[] }).items.map((d) => d.eventId).sort(),
      (ids) => ids.length >= delivered.length,
    );
    expect(listed).toEqual(delivered);
  });

  it('A cannot read, list, change, test, delete or list deliveries of B\'s or an unlimited key\'s webhook: 404 as an unknown id', async () => {
    const attempts = (id: string): [string, RequestInit & { json?: unknown }][] => [
      [`/v1/webhooks/${id}`, {}],
      [`/v1/webhooks/${id}`, { method: 'PATCH', json: { enabled: false } }],
      [`/v1/webhooks/${id}/deliveries`, {}],
      [`/v1/webhooks/${id}/deliveries?status=delivered&cursor=999999`, {}],
      [`/v1/webhooks/${id}/test`, { method: 'POST' }],
      [`/v1/webhooks/${id}`, { method: 'DELETE' }],
    ];
    const missing = await Promise.all(attempts(MISSING_ID).map(async ([path, init]) => seen(await call('A', path, init), MISSING_ID)));
    for (const m of missing) expect(m.status).toBe(404);
    for (const other of [hooks.B.id, hooks.all.id]) {
      const answers = [];
      for (const [path, init] of attempts(other)) answers.push(await seen(await call('A', path, init), other));
      expect(answers).toEqual(missing);
      // Nothing changed: still there and enabled.
      expect(((await (await t.server.api(`/v1/webhooks/${other}`)).json()) as { enabled: boolean }).enabled).toBe(true);
    }
    const list = async (who: Who) => ((await (await call(who, '/v1/webhooks')).json()) as { items: { id: string }[] }).items.map((w) => w.id);
    expect(await list('A')).toEqual([hooks.A.id]);
    expect(await list('B')).toEqual([hooks.B.id]);
    expect((await list('all')).sort()).toEqual([hooks.A.id, hooks.B.id, hooks.all.id].sort());
    expect((await call('A', `/v1/webhooks/${hooks.A.id}`)).status).toBe(200);
  });
});

describe('jobs and schedules of a key of one account', () => {
  const jobBody = (target: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name: 'acctn job', target, actuation: command, ...extra });
  const targets = async (jobId: string) =>
    (await t.db.pool.query<{ device_id: string; refused: string | null; actuation_id: string | null }>('select device_id, refused, actuation_id from job_targets where job_id = $1 order by device_id collate "C"', [jobId])).rows;
  const releasedAll = (jobId: string) => eventually(() => targets(jobId), (rows) => rows.length > 0 && rows.every((r) => r.refused !== null || r.actuation_id !== null), 20_000);

  it('a job by A over listed devices that include B\'s: only A\'s get an actuation, the others are refused NOT_IN_ACCOUNTS alike', async () => {
    const job = await created<{ id: string; accounts: string[] }>(
      await call('A', '/v1/jobs', { method: 'POST', json: jobBody({ deviceIds: [DEVICES.A, DEVICES.B, DEVICES.none, MISSING_DEVICE] }) }),
    );
    expect(job.accounts).toEqual(['acme']);
    const rows = await releasedAll(job.id);
    expect(rows.map((r) => [r.device_id, r.refused, r.actuation_id !== null])).toEqual([
      [DEVICES.A, null, true],
      [DEVICES.B, 'NOT_IN_ACCOUNTS', false],
      [MISSING_DEVICE, 'NOT_IN_ACCOUNTS', false],
      [DEVICES.none, 'NOT_IN_ACCOUNTS', false],
    ]);
    const made = await t.db.pool.query<{ device_id: string }>(`select device_id from actuations where source->>'jobId' = $1`, [job.id]);
    expect(made.rows.map((r) => r.device_id)).toEqual([DEVICES.A]);
    // A's view of the job: B's device and an unknown one are counted alike, and its actuations are A's only.
    const read = (await (await call('A', `/v1/jobs/${job.id}`)).json()) as { counts: { refused: number } };
    expect(read.counts.refused).toBe(3);
    const listed = (await (await call('A', `/v1/jobs/${job.id}/actuations`)).json()) as { items: { deviceId: string }[] };
    expect(listed.items.map((a) => a.deviceId)).toEqual([DEVICES.A]);
  });

  it('a job\'s actuations list leaves out a device that has since moved to another account (as GET /v1/actuations/:id does)', async () => {
    const mover = 'acctn-a-mover';
    expect((await call('A', `/v1/devices/${mover}`, { method: 'PUT', json: {} })).status).toBe(201);
    const job = await created<{ id: string }>(await call('A', '/v1/jobs', { method: 'POST', json: jobBody({ deviceIds: [mover] }) }));
    const [target] = await releasedAll(job.id);
    expect(target!.actuation_id).not.toBeNull();
    const listed = async (who: Who) => ((await (await call(who, `/v1/jobs/${job.id}/actuations`)).json()) as { items: { id: string }[] }).items.map((a) => a.id);
    expect(await listed('A')).toEqual([target!.actuation_id]);
    // A token naming globex moves the device (and its actuations) to B.
    const client = await connectAuthenticated(t.server.wsUrl, mover, mint(mover, { accountId: 'globex' }));
    client.close();
    expect((await call('B', `/v1/devices/${mover}`)).status).toBe(200);
    expect(await listed('A')).toEqual([]);
    expect((await call('A', `/v1/actuations/${target!.actuation_id}`)).status).toBe(404);
    expect(await listed('all')).toEqual([target!.actuation_id]);
  });

  it('a filter job by tags from A reaches only A\'s devices; the same filter without a limit reaches B\'s too', async () => {
    expect((await call('B', `/v1/devices/${DEVICES.B}`, { method: 'PATCH', json: { tags: { site: 'berlin' } } })).status).toBe(200);
    expect((await call('all', `/v1/devices/${DEVICES.none}`, { method: 'PATCH', json: { tags: { site: 'berlin' } } })).status).toBe(200);
    const mine = await created<{ id: string }>(await call('A', '/v1/jobs', { method: 'POST', json: jobBody({ tags: { site: 'berlin' } }) }));
    const named = await created<{ id: string }>(await call('A', '/v1/jobs', { method: 'POST', json: jobBody({ tags: { site: 'berlin' }, accountId: 'globex' }) }));
    const everyone = await created<{ id: string }>(await call('all', '/v1/jobs', { method: 'POST', json: jobBody({ tags: { site: 'berlin' } }) }));
    expect((await releasedAll(mine.id)).map((r) => r.device_id)).toEqual([DEVICES.A2]);
    expect((await releasedAll(everyone.id)).map((r) => r.device_id)).toEqual([DEVICES.A2, DEVICES.B, DEVICES.none]);
    // Naming B's account in A's filter resolves to no device at all (the job starts with none).
    await eventually(() => call('A', `/v1/jobs/${named.id}`).then((r) => r.json() as Promise<{ state: string; targets: number }>), (j) => j.state !== 'scheduled', 20_000);
    expect(await targets(named.id)).toEqual([]);
  });

  it('a job or schedule by A cannot name another account as the actuation\'s accountId (400, nothing stored)', async () => {
    const before = Number((await t.db.pool.query<{ n: string }>('select count(*) as n from jobs')).rows[0]!.n);
    const job = await call('A', '/v1/jobs', { method: 'POST', json: { ...jobBody({ deviceIds: [DEVICES.A] }), actuation: { ...command, accountId: 'globex' } } });
    expect(job.status).toBe(400);
    expect(((await job.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('accountId') });
    const schedule = await call('A', '/v1/schedules', {
      method: 'POST',
      json: { name: 'misnamed', cron: '0 0 1 1 *', job: { ...jobBody({ deviceIds: [DEVICES.A] }), actuation: { ...command, accountId: 'globex' } } },
    });
    expect(schedule.status).toBe(400);
    expect(Number((await t.db.pool.query<{ n: string }>('select count(*) as n from jobs')).rows[0]!.n)).toBe(before);
    expect((await t.db.pool.query('select 1 from schedules where name = $1', ['misnamed'])).rowCount).toBe(0);
    // Nor can a schedule it has be changed to name one.
    const own = await created<{ id: string }>(await call('A', '/v1/schedules', { method: 'POST', json: { name: 'acctn own', cron: '0 0 1 1 *', enabled: false, job: jobBody({ deviceIds: [DEVICES.A] }) } }));
    const patched = await call('A', `/v1/schedules/${own.id}`, { method: 'PATCH', json: { job: { ...jobBody({ deviceIds: [DEVICES.A] }), actuation: { ...command, accountId: 'globex' } } } });
    expect(patched.status).toBe(400);
    expect(((await (await call('A', `/v1/schedules/${own.id}`)).json()) as { job: { actuation: Record<string, unknown> } }).job.actuation).not.toHaveProperty('accountId');
    expect((await call('A', `/v1/schedules/${own.id}`, { method: 'DELETE' })).status).toBe(204);
    // Its own account, and none, are fine.
    await created(await call('A', '/v1/jobs', { method: 'POST', json: { ...jobBody({ deviceIds: [DEVICES.A] }, { startAt: '2099-01-01T00:00:00Z' }), actuation: { ...command, accountId: 'acme' } } }));
  });

  it('A cannot read, list, cancel or list actuations of B\'s jobs, nor read, change or delete B\'s schedules: 404 as an unknown id', async () => {
    const later = { startAt: '2099-01-01T00:00:00Z' };
    const bJob = await created<{ id: string }>(await call('B', '/v1/jobs', { method: 'POST', json: jobBody({ deviceIds: [DEVICES.B] }, later) }));
    const allJob = await created<{ id: string }>(await call('all', '/v1/jobs', { method: 'POST', json: jobBody({ deviceIds: [DEVICES.A] }, later) }));
    const schedule = (who: Who) => call(who, '/v1/schedules', { method: 'POST', json: { name: `acctn ${who}`, cron: '0 0 1 1 *', job: jobBody({ deviceIds: [DEVICES.B] }) } });
    const bSchedule = await created<{ id: string }>(await schedule('B'));
    const allSchedule = await created<{ id: string }>(await schedule('all'));
    const jobAttempts = (id: string): [string, RequestInit & { json?: unknown }][] => [
      [`/v1/jobs/${id}`, {}],
      [`/v1/jobs/${id}/actuations`, {}],
      [`/v1/jobs/${id}/actuations?status=queued&limit=1`, {}],
      [`/v1/jobs/${id}/cancel`, { method: 'POST' }],
    ];
    const scheduleAttempts = (id: string): [string, RequestInit & { json?: unknown }][] => [
      [`/v1/schedules/${id}`, {}],
      [`/v1/schedules/${id}`, { method: 'PATCH', json: { enabled: false } }],
      [`/v1/schedules/${id}`, { method: 'DELETE' }],
    ];
    for (const [attempts, others] of [[jobAttempts, [bJob.id, allJob.id]], [scheduleAttempts, [bSchedule.id, allSchedule.id]]] as const) {
      const missing = [];
      for (const [path, init] of attempts(MISSING_ID)) missing.push(await seen(await call('A', path, init), MISSING_ID));
      for (const m of missing) expect(m.status).toBe(404);
      for (const other of others) {
        const answers = [];
        for (const [path, init] of attempts(other)) answers.push(await seen(await call('A', path, init), other));
        expect(answers).toEqual(missing);
      }
    }
    // Nothing changed.
    for (const id of [bJob.id, allJob.id]) expect(((await (await t.server.api(`/v1/jobs/${id}`)).json()) as { state: string }).state).toBe('scheduled');
    for (const id of [bSchedule.id, allSchedule.id]) expect(((await (await t.server.api(`/v1/schedules/${id}`)).json()) as { enabled: boolean }).enabled).toBe(true);
    // Listings: A sees only jobs and schedules made with its accounts, whatever the cursor.
    const jobs = async (who: Who, query = '') => ((await (await call(who, `/v1/jobs${query}`)).json()) as { items: { id: string; accounts: string[] | null }[] }).items;
    const aJobs = await jobs('A');
    expect(aJobs.length).toBeGreaterThan(0);
    expect(aJobs.every((j) => JSON.stringify(j.accounts) === '["acme"]')).toBe(true);
    expect(await jobs('A', `?cursor=${crypto.randomUUID().replace(/^./, 'f')}&state=scheduled`)).toEqual((await jobs('A', '?state=scheduled')));
    expect((await jobs('B')).map((j) => j.id)).toEqual([bJob.id]);
    expect((await jobs('all')).map((j) => j.id)).toEqual(expect.arrayContaining([bJob.id, allJob.id, ...aJobs.map((j) => j.id)]));
    const schedules = async (who: Who) => ((await (await call(who, '/v1/schedules')).json()) as { items: { id: string }[] }).items.map((s) => s.id);
    expect(await schedules('A')).toEqual([]);
    expect(await schedules('B')).toEqual([bSchedule.id]);
    expect((await schedules('all')).sort()).toEqual([bSchedule.id, allSchedule.id].sort());
  });
});

describe('POST /v1/devices/:id/revoke-tokens by a key of one account', () => {
  it('on B\'s device or one without an account: 404 as an unknown device, nothing written; on its own: 200', async () => {
    const revocations = async () => (await t.db.pool.query<{ device_id: string }>('select device_id from device_token_revocations order by device_id')).rows.map((r) => r.device_id);
    const before = await revocations();
    const missing = await seen(await call('A', `/v1/devices/${MISSING_DEVICE}/revoke-tokens`, { method: 'POST' }), MISSING_DEVICE);
    expect(missing.status).toBe(404);
    for (const other of [DEVICES.B, DEVICES.none]) expect(await seen(await call('A', `/v1/devices/${other}/revoke-tokens`, { method: 'POST' }), other)).toEqual(missing);
    expect(await revocations()).toEqual(before);
    const own = await call('A', `/v1/devices/${DEVICES.A}/revoke-tokens`, { method: 'POST' });
    expect(own.status).toBe(200);
    expect(((await own.json()) as { deviceId: string }).deviceId).toBe(DEVICES.A);
    expect((await call('B', `/v1/devices/${DEVICES.B}/revoke-tokens`, { method: 'POST' })).status).toBe(200);
    expect(await revocations()).toEqual([...before, DEVICES.A, DEVICES.B].sort());
  });
});

describe('GET /v1/audit', () => {
  it('needs admin, which a key limited to accounts can never hold', async () => {
    for (const who of ['A', 'B', 'all'] as const) {
      const res = await call(who, '/v1/audit');
      expect(res.status, who).toBe(403);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('"admin"') });
    }
    const limitedAdmin = await t.server.api('/v1/api-keys', { method: 'POST', json: { name: 'limited admin', scopes: ['admin'], accounts: ['acme'] } });
    expect(limitedAdmin.status).toBe(400);
    const admin = await created<{ key: string }>(await t.server.api('/v1/api-keys', { method: 'POST', json: { name: 'auditor', scopes: ['admin'] } }));
    expect((await t.server.api('/v1/audit', { headers: { authorization: `Bearer ${admin.key}` } })).status).toBe(200);
    // And no key row holds both (none was written by the refused request).
    expect((await t.db.pool.query(`select 1 from api_keys where accounts is not null and scopes && array['admin', 'dss:admin', 'keys:admin', 'metrics:read']`)).rowCount).toBe(0);
  });
});
