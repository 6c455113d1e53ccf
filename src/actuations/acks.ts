/**
 * Acknowledgements from devices, batched like submissions. A device can only
 * acknowledge its own actuations: the device id comes from the authenticated
 * connection, never from the message.
 */
import type { Pool } from '../db/pool.js';
import type { DeviceConnection } from '../gateway/device-connection.js';
import type { AckMessage } from '../gateway/protocol.js';
import { ackUpTo, applyAcks, type AckById, type AckOutcome } from './ack-sql.js';
import { makeBatcher } from '../db/batcher.js';

export interface AckHandler {
  handle(connection: DeviceConnection, message: AckMessage): Promise<void>;
  drain(): Promise<void>;
}

export function makeAckHandler(options: { pool: Pool; onAck?(result: AckOutcome): void }): AckHandler {
  // One flush at a time: acks are not on anyone's latency path, and bigger batches cost less.
  const batcher = makeBatcher<AckById, AckOutcome>((acks) => applyAcks(options.pool, acks), { maxBatchSize: 500, maxConcurrent: 1 });
  // Each connection's last ack by id, settled once it is recorded. Batches flush one at a time
  // in arrival order, so when it has settled every earlier ack of that connection has too.
  const lastAck = new WeakMap<DeviceConnection, Promise<void>>();

  return {
    async handle(connection, message) {
      const deviceId = connection.deviceId!;
      if ('upTo' in message) {
        // After this device's acks by id sent before it, which may still be waiting in a batch.
        await lastAck.get(connection);
        const count = await ackUpTo(options.pool, deviceId, message.upTo);
        connection.log.debug({ upTo: message.upTo, count }, 'device: acked up to seq');
        return;
      }
      // Not awaited: the device's next message (usually its next ack) is handled at once and
      // joins the same batch, instead of each ack of a device waiting for the one before to
      // commit. The outcome is only counted and logged.
      const recorded = batcher.add({ deviceId, id: message.id, statusCode: message.statusCode, reasonPhrase: message.reasonPhrase ?? null }).then(
        (result) => {
          options.onAck?.(result);
          if (result.outcome === 'unknown') {
            connection.log.warn({ actuationId: message.id }, 'device: ack for an actuation that is not this device\'s; ignored');
          } else if (result.outcome === 'late') {
            connection.log.info({ actuationId: message.id }, 'device: late ack recorded; status unchanged');
          }
        },
        (err: unknown) =>
          connection.log.error({ err, actuationId: message.id }, 'device: ack not recorded (database error); the actuation stays sent'),
      );
      lastAck.set(connection, recorded);
    },
    drain: () => batcher.drain(),
  };
}
