/**
 * The DSS part, built once by `buildApp`: the REST routes for streams and rules,
 * the rule engine, and (after `start()`) the supervisor that holds this
 * instance's share of the enabled streams. Actuations go through the submitter
 * it is given, the same durable path as the REST API.
 */
import type { RouteRegistrar } from '../http/request-context.js';
import type { ActuationSubmitter } from '../actuations/types.js';
import type { Config } from '../config/config.js';
import type { Pool } from '../db/pool.js';
import { dssRoutes } from '../http/routes/dss.js';
import type { Logger } from '../logger.js';
import { startIntervalTasks, type IntervalEvaluationReport, type IntervalTasks } from './interval-tasks.js';
import { makeRuleEngine } from './rule-engine.js';
import { makeStateRecorder } from './state-recorder.js';
import { startStreamClient, type DssClientConfig, type FrameKind } from './stream-client.js';
import { startStreamSupervisor, type StreamSupervisor } from './stream-supervisor.js';

export type DssConfig = DssClientConfig &
  Pick<Config, 'instanceId' | 'dssEnabled' | 'dssSupervisorIntervalMs' | 'dssRulesRefreshMs' | 'dssStateEnabled' | 'dssEventLogHours' | 'dssIntervalPollMs' | 'databaseTimeoutMs'>;

export interface Dss {
  /** Its REST routes, added to the API by `app.ts`. */
  routes: RouteRegistrar;
  /** Starts holding streams (no-op when `dssEnabled` is false). */
  start(): void;
  /** Closes this instance's stream clients (position flushed) and lets go of their locks. */
  stop(): Promise<void>;
  /** Stream ids this instance holds now. */
  heldStreams(): string[];
}

export interface DssOptions {
  config: DssConfig;
  logger: Logger;
  pool: Pool;
  submitter: ActuationSubmitter;
  /** Called for every frame a stream client receives (metrics). */
  onFrame?(streamId: string, kind: FrameKind): void;
  /** This instance stopped holding a stream: `why` is deleted, disabled, edited, shutdown or lock connection lost. */
  onStreamReleased?(streamId: string, why: string): void;
  /** An interval rule's evaluation finished or failed on this instance (metrics). */
  onIntervalEvaluated?(report: IntervalEvaluationReport): void;
}

export function makeDss(options: DssOptions): Dss {
  const { config, logger, pool, submitter, onFrame } = options;
  const engine = makeRuleEngine({ pool, submitter, refreshMs: config.dssRulesRefreshMs });
  // Beside the rules on each event's commit path (see state-recorder.ts).
  const recorder = config.dssStateEnabled ? makeStateRecorder({ pool, withLog: config.dssEventLogHours > 0, flushTimeoutMs: config.databaseTimeoutMs }) : undefined;
  let supervisor: StreamSupervisor | undefined;
  let intervalTasks: IntervalTasks | undefined;

  const routes = dssRoutes({
    pool,
    changed: {
      rules: () => engine.invalidate(),
      streams: () => void supervisor?.poke(),
    },
  });

  return {
    routes,
    start() {
      if (!config.dssEnabled || supervisor) return;
      supervisor = startStreamSupervisor({
        pool,
        logger,
        instanceId: config.instanceId,
        intervalMs: config.dssSupervisorIntervalMs,
        startClient: (stream) =>
          startStreamClient({
            stream,
            instanceId: config.instanceId,
            config,
            logger,
            pool,
            planEvent: async (event, log, skipped) => {
              // The state's skip first: the rules' own (more telling) is then the stream's lastError.
              const recording = recorder?.taskFor(stream.id, event, skipped);
              const tasks = await engine.planEvent(stream.id, event, log, skipped);
              return recording ? [...tasks, recording] : tasks;
            },
            ...(onFrame ? { onFrame: (kind: FrameKind) => onFrame(stream.id, kind) } : {}),
          }),
        ...(options.onStreamReleased ? { onReleased: options.onStreamReleased } : {}),
      });
      intervalTasks = startIntervalTasks({ pool, logger, submitter, instanceId: config.instanceId, pollMs: config.dssIntervalPollMs, onEvaluated: options.onIntervalEvaluated });
    },
    async stop() {
      await intervalTasks?.stop();
      intervalTasks = undefined;
      await supervisor?.stop();
      supervisor = undefined;
    },
    heldStreams: () => supervisor?.held() ?? [],
  };
}
