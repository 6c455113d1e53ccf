/**
 * Inserts a batch of actuations in one transaction:
 *  1. lock the devices' counter rows (sorted, so concurrent batches cannot deadlock),
 *  2. read queue depths and existing idempotency keys under those locks (exact, across instances),
 *  3. assign gap-free sequence numbers, insert the accepted rows, advance the counters,
 *  4. supersede older queued actuations with the same collapse key,
 *  5. one NOTIFY for the devices another instance may hold.
 * Every decision is made under the device row locks, so two instances inserting for one
 * device take turns and never disagree about seq, idempotency or the queue limit.
 */
import type { PoolClient } from '../db/pool.js';
import type { ActuationSource, ActuationSummary, SubmitResult } from './types.js';

/** A NewActuation with its id generated and defaults applied. */
export interface PreparedActuation {
  id: string;
  deviceId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
  accountId: string | null;
  gatewayId: string;
  ttlSeconds: number;
  ackTimeoutSeconds: number | null;
  collapseKey: string | null;
  idempotencyKey: string | null;
  source: ActuationSource;
}

export const ACTUATION_READY_CHANNEL = 'actuation_ready';
/** NOTIFY payloads must stay under 8,000 bytes. */
const MAX_NOTIFY_PAYLOAD = 7_500;

export async function insertActuations(
  client: PoolClient,
  items: PreparedActuation[],
  options: { maxQueuedPerDevice: number; notifyDevices: (deviceIds: string[]) => string[]; onSuperseded?(sourceKind: string): void },
): Promise<SubmitResult[]> {
  const deviceIds = [...new Set(items.map((i) => i.deviceId))].sort();

  await client.query(`insert into device_counters (device_id) select unnest($1::text[]) on conflict do nothing`, [deviceIds]);
  const counters = await client.query<{ device_id: string; last_seq: number }>(
    `select device_id, last_seq from device_counters where device_id = any($1::text[]) order by device_id for update`,
    [deviceIds],
  );
  const lastSeq = new Map(counters.rows.map((r) => [r.device_id, r.last_seq]));

  const depthRows = await client.query<{ device_id: string; queued: number }>(
    `select device_id, count(*)::int as queued from actuations
      where device_id = any($1::text[]) and status = 'queued' group by device_id`,
    [deviceIds],
  );
  const queued = new Map(depthRows.rows.map((r) => [r.device_id, r.queued]));

  const keyed = items.filter((i) => i.idempotencyKey !== null);
  const existing = new Map<string, ActuationSummary>();
  if (keyed.length > 0) {
    const { rows } = await client.query<ActuationSummary & { idempotencyKey: string }>(
      `select id, device_id as "deviceId", seq, status, created_at as "createdAt", expires_at as "expiresAt", idempotency_key as "idempotencyKey"
         from actuations
        where (device_id, idempotency_key) in (select * from unnest($1::text[], $2::text[]))`,
      [keyed.map((i) => i.deviceId), keyed.map((i) => i.idempotencyKey)],
    );
    for (const row of rows) existing.set(keyKey(row.deviceId, row.idempotencyKey), strip(row));
  }

  // Decide every item in submission order; items with the same key in this batch share the first one's row.
  type Decision = SubmitResult | { outcome: 'accepted'; item: PreparedActuation } | { outcome: 'same_as'; index: number };
  const decisions: Decision[] = [];
  const firstWithKey = new Map<string, number>();
  const accepted: { item: PreparedActuation; seq: number }[] = [];
  for (const item of items) {
    const key = item.idempotencyKey === null ? null : keyKey(item.deviceId, item.idempotencyKey);
    const found = key === null ? undefined : existing.get(key);
    if (found) {
      decisions.push({ outcome: 'existing', actuation: found });
      continue;
    }
    if (key !== null && firstWithKey.has(key)) {
      decisions.push({ outcome: 'same_as', index: firstWithKey.get(key)! });
      continue;
    }
    const depth = queued.get(item.deviceId) ?? 0;
    if (depth >= options.maxQueuedPerDevice) {
      decisions.push({ outcome: 'queue_full', limit: options.maxQueuedPerDevice });
      continue;
    }
    queued.set(item.deviceId, depth + 1);
    const seq = (lastSeq.get(item.deviceId) ?? 0) + 1;
    lastSeq.set(item.deviceId, seq);
    if (key !== null) firstWithKey.set(key, decisions.length);
    accepted.push({ item, seq });
    decisions.push({ outcome: 'accepted', item });
  }

  const inserted = new Map<string, ActuationSummary>();
  if (accepted.length > 0) {
    const { rows } = await client.query<ActuationSummary>(
      `insert into actuations (id, device_id, seq, account_id, gateway_id, component_id, command, params,
                               collapse_key, idempotency_key, source, expires_at, ack_timeout_seconds, history)
       select v.id, v.device_id, v.seq, v.account_id, v.gateway_id, v.component_id, v.command, v.params::jsonb,
              v.collapse_key, v.idempotency_key, v.source::jsonb,
              case when v.ttl > 0 then now() + v.ttl * interval '1 second' end,
              v.ack_timeout,
              jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now()))
         from unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::text[], $11::text[], $12::int[], $13::int[])
              as v(id, device_id, seq, account_id, gateway_id, component_id, command, params,
                   collapse_key, idempotency_key, source, ttl, ack_timeout)
       returning id, device_id as "deviceId", seq, status, created_at as "createdAt", expires_at as "expiresAt"`,
      [
        accepted.map((a) => a.item.id),
        accepted.map((a) => a.item.deviceId),
        accepted.map((a) => a.seq),
        accepted.map((a) => a.item.accountId),
        accepted.map((a) => a.item.gatewayId),
        accepted.map((a) => a.item.componentId),
        accepted.map((a) => a.item.command),
        accepted.map((a) => JSON.stringify(a.item.params)),
        accepted.map((a) => a.item.collapseKey),
        accepted.map((a) => a.item.idempotencyKey),
        accepted.map((a) => JSON.stringify(a.item.source)),
        accepted.map((a) => a.item.ttlSeconds),
        accepted.map((a) => a.item.ackTimeoutSeconds),
      ],
    );
    for (const row of rows) inserted.set(row.id, row);

    const advanced = [...new Set(accepted.map((a) => a.item.deviceId))];
    await client.query(
      `update device_counters d set last_seq = v.last_seq
         from unnest($1::text[], $2::bigint[]) as v(device_id, last_seq) where d.device_id = v.device_id`,
      [advanced, advanced.map((d) => lastSeq.get(d)!)],
    );

    // Latest wins: only the newest item per (device, collapse key) supersedes; older ones in
    // this batch are themselves queued rows with a lower seq and get superseded by it too.
    const newestByCollapseKey = new Map<string, { id: string; deviceId: string; collapseKey: string; seq: number }>();
    for (const { item, seq } of accepted) {
      if (item.collapseKey !== null) {
        newestByCollapseKey.set(keyKey(item.deviceId, item.collapseKey), { id: item.id, deviceId: item.deviceId, collapseKey: item.collapseKey, seq });
      }
    }
    if (newestByCollapseKey.size > 0) {
      const newest = [...newestByCollapseKey.values()];
      const superseded = await client.query<{ kind: string }>(
        `update actuations a
            set status = 'superseded', superseded_by = v.id, completed_at = now(),
                history = a.history || jsonb_build_array(jsonb_build_object('status', 'superseded', 'at', now(), 'supersededBy', v.id))
           from unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[]) as v(device_id, collapse_key, id, seq)
          where a.device_id = v.device_id and a.collapse_key = v.collapse_key and a.status = 'queued' and a.seq < v.seq
          returning a.source->>'kind' as kind`,
        [newest.map((n) => n.deviceId), newest.map((n) => n.collapseKey), newest.map((n) => n.id), newest.map((n) => n.seq)],
      );
      for (const row of superseded.rows) options.onSuperseded?.(row.kind);
    }

    for (const payload of notifyPayloads(options.notifyDevices(advanced))) {
      await client.query(`select pg_notify($1, $2)`, [ACTUATION_READY_CHANNEL, payload]);
    }
  }

  return decisions.map((d): SubmitResult => {
    if (d.outcome === 'accepted') return { outcome: 'created', actuation: inserted.get(d.item.id)! };
    if (d.outcome === 'same_as') {
      const first = decisions[d.index] as { item: PreparedActuation };
      return { outcome: 'existing', actuation: inserted.get(first.item.id)! };
    }
    return d;
  });
}

function notifyPayloads(deviceIds: string[]): string[] {
  const payloads: string[] = [];
  let current: string[] = [];
  let size = 20;
  for (const id of deviceIds) {
    const cost = JSON.stringify(id).length + 1;
    if (size + cost > MAX_NOTIFY_PAYLOAD && current.length > 0) {
      payloads.push(JSON.stringify({ deviceIds: current }));
      current = [];
      size = 20;
    }
    current.push(id);
    size += cost;
  }
  if (current.length > 0) payloads.push(JSON.stringify({ deviceIds: current }));
  return payloads;
}

function keyKey(deviceId: string, key: string): string {
  return `${deviceId}\u0000${key}`;
}

function strip(row: ActuationSummary & { idempotencyKey?: string }): ActuationSummary {
  return { id: row.id, deviceId: row.deviceId, seq: row.seq, status: row.status, createdAt: row.createdAt, expiresAt: row.expiresAt };
}
