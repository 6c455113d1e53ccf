/**
 * The actuation lifecycle as typed events: one event per committed transition.
 *
 *   (new) -> queued -> sent -> acked | failed | timed_out
 *            queued | sent -> expired;  queued -> cancelled | superseded;  sent -> queued (requeue)
 *
 * Each transition is made by one SQL unit (migrations/0015_lifecycle.sql,
 * src/actuations/transitions-sql.ts). The function that runs a transition's statement
 * reports its rows here once the statement's transaction has committed, never before and
 * never for one that rolled back; listeners (metrics; later the change feed and webhooks)
 * subscribe with one line: `lifecycle.subscribe(listener)`.
 *
 * Listeners run synchronously, in subscription order, on the path that made the
 * transition: they must be quick and must not throw (one that throws is logged and the
 * others still run). A transition whose commit this instance never learned of (the
 * connection failed while the commit was under way) emits nothing here.
 */
import type { Logger } from '../logger.js';
import type { ActuationStatus } from './types.js';

export type ActuationEventType = `actuation.${ActuationStatus}`;

/** Which path made the transition (several paths make the same one). */
export type TransitionPath =
  | 'submit' // queued: inserted by a submission
  | 'direct_send' // sent: inserted as sent by a submission to a device live here
  | 'claim' // sent: claimed by the dispatcher
  | 'requeue' // queued: sent but not written (socket closed), put back
  | 'ack' // acked or failed: an ack by id
  | 'ack_up_to' // acked: an `upTo` ack
  | 'sweep' // expired or timed_out
  | 'cancel' // cancelled: DELETE /v1/actuations/:id
  | 'job_stop' // cancelled: its job was cancelled or aborted
  | 'supersede'; // superseded: a newer actuation with the same collapse key

export interface ActuationEvent {
  type: ActuationEventType;
  actuationId: string;
  deviceId: string;
  seq: number;
  /** The status entered. */
  status: ActuationStatus;
  /** The kind of the actuation's source: `rest` or `dss`. */
  source: string;
  via: TransitionPath;
  createdAt: Date;
  /** When this instance learned of the commit. */
  at: Date;
  /** acked, failed. */
  statusCode: number | null;
  reasonPhrase: string | null;
  /** The session and instance it was sent to (sent, acked, failed). */
  sessionId: number | null;
  instanceId: string | null;
  /** superseded: the newer actuation. */
  supersededBy: string | null;
}

export type ActuationListener = (event: ActuationEvent) => void;

export interface Lifecycle {
  /** Returns the unsubscribe function. */
  subscribe(listener: ActuationListener): () => void;
  /** Reports transitions whose transaction has committed (called by the transition statements' functions only). */
  committed(events: readonly ActuationEvent[]): void;
}

/** The fields every transition has; the rest default to null. */
export type TransitionFields = Pick<ActuationEvent, 'actuationId' | 'deviceId' | 'seq' | 'source' | 'createdAt'> &
  Partial<Pick<ActuationEvent, 'statusCode' | 'reasonPhrase' | 'sessionId' | 'instanceId' | 'supersededBy'>>;

/** The one builder of events: `status` entered through `via`. */
export function transition(status: ActuationStatus, via: TransitionPath, fields: TransitionFields, at: Date): ActuationEvent {
  return {
    type: `actuation.${status}`,
    actuationId: fields.actuationId,
    deviceId: fields.deviceId,
    seq: fields.seq,
    status,
    source: fields.source,
    via,
    createdAt: fields.createdAt,
    at,
    statusCode: fields.statusCode ?? null,
    reasonPhrase: fields.reasonPhrase ?? null,
    sessionId: fields.sessionId ?? null,
    instanceId: fields.instanceId ?? null,
    supersededBy: fields.supersededBy ?? null,
  };
}

export function makeLifecycle(logger: Logger): Lifecycle {
  const log = logger.child({ component: 'lifecycle' });
  let listeners: ActuationListener[] = [];
  return {
    subscribe(listener) {
      listeners = [...listeners, listener];
      return () => {
        listeners = listeners.filter((l) => l !== listener);
      };
    },
    committed(events) {
      const current = listeners;
      for (const event of events) {
        for (const listener of current) {
          try {
            listener(event);
          } catch (err) {
            log.error({ err, type: event.type, actuationId: event.actuationId }, 'lifecycle: a listener failed; the others still run');
          }
        }
      }
    },
  };
}
