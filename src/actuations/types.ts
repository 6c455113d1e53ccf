/**
 * Terminology
 * - device: a thing with a WebSocket to one instance, identified by `deviceId` (the token's `sub`).
 * - session: one authenticated connection of a device (`device_sessions` row).
 * - actuation: one command for one device, durable from the moment it is accepted (202).
 * - seq: the actuation's position in its device's sequence, gap-free, assigned in the database.
 * - attempt: one write of an actuation to a device's socket (`sent`); re-sends count as attempts.
 * - source: where an actuation came from: a REST caller, a DSS stream event matched by a rule, or a job (and what created it).
 */

export const ACTUATION_STATUSES = ['queued', 'sent', 'acked', 'failed', 'expired', 'cancelled', 'superseded', 'timed_out'] as const;
export type ActuationStatus = (typeof ACTUATION_STATUSES)[number];

export type ActuationSource =
  | { kind: 'rest'; caller: string; requestId: string }
  | { kind: 'dss'; streamId: string; seq: number; ruleId: string }
  /** A job's release; `cause` is what created the job (a REST caller, or a schedule's occurrence). */
  | { kind: 'job'; jobId: string; cause: { kind: 'rest'; caller: string; requestId: string } | { kind: 'schedule'; scheduleId: string; occurrence: string } };

/** What a caller (REST handler, DSS rule) asks for. */
export interface NewActuation {
  deviceId: string;
  componentId: string;
  command: string;
  params: { name: string; value: unknown }[];
  accountId?: string;
  gatewayId?: string;
  /** Seconds until a queued or sent actuation expires; 0 = never; undefined = configured default. */
  ttlSeconds?: number;
  /** Seconds a sent actuation may wait for its ack before it is `timed_out`. */
  ackTimeoutSeconds?: number;
  /** A newer queued actuation with the same key supersedes older queued ones of the device. */
  collapseKey?: string;
  /**
   * Same key for the same device = the same actuation (the original is returned).
   * DSS rules use `dss:<streamId>:<seq>:<ruleId>`, so a replayed event never creates a second one.
   */
  idempotencyKey?: string;
  source: ActuationSource;
}

export type SubmitResult =
  | { outcome: 'created'; actuation: ActuationSummary }
  | { outcome: 'existing'; actuation: ActuationSummary }
  | { outcome: 'queue_full'; limit: number };

export interface ActuationSummary {
  id: string;
  deviceId: string;
  seq: number;
  status: ActuationStatus;
  createdAt: Date;
  expiresAt: Date | null;
}

/**
 * The one durable path into the queue. Resolves only after the actuation's row is
 * committed. Used by the REST API and by DSS rules.
 */
export interface ActuationSubmitter {
  submit(actuation: NewActuation): Promise<SubmitResult>;
}
