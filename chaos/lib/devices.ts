/**
 * Acking devices for the chaos scenarios: the project's device simulator
 * (src/simulator, what `npm run device` runs: reconnects with backoff, acks every
 * actuation by id), in this process, with a record of everything each device got.
 * Pings are off (the scenarios watch the database, not dead servers) and the
 * reconnect backoff is capped at 2 s so a scenario's recovery is not dominated by it.
 */
import crypto from 'node:crypto';
import { mintDeviceToken } from '../../src/gateway/device-token.js';
import { AUTHENTICATED, makeSimulatedDevice, type SimulatedDevice } from '../../src/simulator/device-simulator.js';

export interface Receipt {
  deviceId: string;
  seq: number | undefined;
  at: number;
}

export interface Fleet {
  readonly ids: readonly string[];
  /** Every actuation frame received, by actuation id, in arrival order. */
  readonly received: Map<string, Receipt[]>;
  /** When each actuation's first ack was sent by its device. */
  readonly ackedAt: Map<string, number>;
  /** Socket closes seen by devices, by close code. */
  readonly disconnects: Map<number, number>;
  readonly authentications: () => number;
  /** Device ids whose socket is open and authenticated now. */
  openIds(): Set<string>;
  /** Resolves once every device is authenticated; rejects after `timeoutMs`. */
  allAuthenticated(timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

export function makeTokenMinter(privateKeyPem: string): (deviceId: string) => string {
  const key = crypto.createPrivateKey(privateKeyPem);
  const cache = new Map<string, string>();
  return (deviceId) => {
    let token = cache.get(deviceId);
    if (!token) cache.set(deviceId, (token = mintDeviceToken(key, deviceId, { accountId: 'chaos', expiresIn: '12h' })));
    return token;
  };
}

export function startFleet(options: { url: string; ids: readonly string[]; token: (deviceId: string) => string; spreadMs?: number }): Fleet {
  const received = new Map<string, Receipt[]>();
  const ackedAt = new Map<string, number>();
  const disconnects = new Map<number, number>();
  const devices: SimulatedDevice[] = [];
  const timers: NodeJS.Timeout[] = [];
  let authentications = 0;
  const spreadMs = options.spreadMs ?? Math.min(options.ids.length * 5, 2_000);
  for (const deviceId of options.ids) {
    const start = () =>
      devices.push(
        makeSimulatedDevice({
          url: options.url,
          deviceId,
          token: options.token,
          ack: 'ok',
          pingIntervalMs: 0,
          backoff: { initialMs: 250, maxMs: 2_000 },
          onEvent(event) {
            if (event.type === 'device:actuation') {
              const id = String(event.message.id);
              const list = received.get(id) ?? [];
              list.push({ deviceId, seq: event.message.seq, at: Date.now() });
              received.set(id, list);
            } else if (event.type === 'device:ack-sent') {
              if (!ackedAt.has(event.id)) ackedAt.set(event.id, Date.now());
            } else if (event.type === 'device:authenticated') {
              authentications++;
            } else if (event.type === 'device:disconnected') {
              disconnects.set(event.code, (disconnects.get(event.code) ?? 0) + 1);
            }
          },
        }),
      );
    if (spreadMs === 0) start();
    else timers.push(setTimeout(start, Math.random() * spreadMs));
  }
  const openIds = () => new Set(devices.filter((d) => d.state === AUTHENTICATED).map((d) => d.deviceId));
  return {
    ids: options.ids,
    received,
    ackedAt,
    disconnects,
    authentications: () => authentications,
    openIds,
    async allAuthenticated(timeoutMs) {
      const started = Date.now();
      while (openIds().size < options.ids.length) {
        if (Date.now() - started > timeoutMs) throw new Error(`only ${openIds().size} of ${options.ids.length} devices authenticated within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return Date.now() - started;
    },
    async stop() {
      for (const t of timers) clearTimeout(t);
      await Promise.all(devices.map((d) => d.stop()));
    },
  };
}
