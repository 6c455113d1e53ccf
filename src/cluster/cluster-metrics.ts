/**
 * `/metrics` with `WORKERS` > 1: the port is shared, so a scrape lands on any one worker,
 * which alone would answer a random 1/N of the picture. The worker that takes the scrape
 * asks the primary, which gathers every live worker's registry over IPC and sums them
 * (prom-client's `AggregatorRegistry`: counters and histograms summed, gauges by each
 * metric's own aggregator, sum unless it says otherwise).
 *
 * Bounded: prom-client gives up on workers after 5 s; the asking worker gives up after
 * METRICS_WAIT_MS, and the scrape fails (500) rather than answer one worker's share as if
 * it were the whole.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { isMessage } from './ipc-message.js';

const REQUEST = 'iotws:metrics-request';
const RESPONSE = 'iotws:metrics-response';
export const METRICS_WAIT_MS = 6_000;

interface MetricsRequest {
  type: typeof REQUEST;
  requestId: number;
}
interface MetricsResponse {
  type: typeof RESPONSE;
  requestId: number;
  text?: string;
  error?: string;
}

/** What the `/metrics` route reads: a registry, or the cluster's sum of them. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** In the primary: answers workers' requests for the cluster's metrics. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker: Worker, message: unknown) => {
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const reply = (answer: Omit<MetricsResponse, 'type' | 'requestId'>) => {
      if (worker.isConnected()) worker.send({ type: RESPONSE, requestId: message.requestId, ...answer } satisfies MetricsResponse);
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: Error) => reply({ error: err.message }),
    );
  });
}

/** In a worker: `registry` answers the primary's gathering; the source asks the primary for the sum. */
export function clusterMetricsSource(registry: Registry): MetricsSource {
  AggregatorRegistry.setRegistries([registry]);
  new AggregatorRegistry(); // installs the worker's listener for the primary's gathering
  let nextId = 0;
  const waiting = new Map<number, (answer: MetricsResponse) => void>();
  process.on('message', (message: unknown) => {
    if (isMessage<MetricsResponse>(message, RESPONSE)) waiting.get(message.requestId)?.(message);
  });
  return {
    contentType: registry.contentType,
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const requestId = nextId++;
        const timer = setTimeout(() => settle({ type: RESPONSE, requestId, error: `no answer from the cluster primary within ${METRICS_WAIT_MS} ms` }), METRICS_WAIT_MS);
        function settle(answer: MetricsResponse): void {
          clearTimeout(timer);
          waiting.delete(requestId);
          if (answer.text !== undefined) resolve(answer.text);
          else reject(new Error(`cluster metrics: ${answer.error ?? 'no text'}`));
        }
        waiting.set(requestId, settle);
        process.send?.({ type: REQUEST, requestId } satisfies MetricsRequest);
      }),
  };
}
