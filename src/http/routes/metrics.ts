import http from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction } from 'fastify';
import type { MetricsSource } from '../../cluster/cluster-metrics.js';
import type { KeyVerifier } from '../../keys/key-verifier.js';
import { authenticate, scopeRefusal } from '../auth.js';
import { BASIC_CHALLENGE, basicAuth } from '../basic-auth.js';
import type { RouteRegistrar } from '../request-context.js';

/**
 * `GET /metrics` in Prometheus text format. With `credentials`, the route checks them
 * itself (any one of them: the API's, and the read-only metrics credential), so the
 * API's own authentication skips it (`config.ownAuth`) and the metrics credential opens
 * nothing else. An API key with `metrics:read` (or `admin`) too; a Bearer header is
 * answered by the key check alone.
 */
export function metricsRoutes(registry: MetricsSource, credentials: { username: string; password: string }[] = [], keys?: KeyVerifier): RouteRegistrar {
  const basics = credentials.map((c) => basicAuth(c));
  const key = keys && authenticate({ keys, all: true });
  const check = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    if (key && /^Bearer\s/i.test(request.headers.authorization ?? '')) {
      return key(request, reply, (err?: Error) => done(err ?? scopeRefusal(request, 'metrics:read')));
    }
    // Passes when one of the credentials matches; otherwise fails as the last one did.
    let refused;
    for (const basic of basics) {
      refused = basic(request.headers);
      if (!refused) return done();
    }
    reply.raw.setHeader('WWW-Authenticate', BASIC_CHALLENGE);
    done(refused);
  };
  return (app) => {
    app.get('/metrics', { config: { ownAuth: true }, onRequest: basics.length > 0 ? [check] : [] }, async (_request, reply) => {
      const body = await registry.metrics();
      return reply.type(registry.contentType).send(body);
    });
  };
}

/** `/metrics` alone, unauthenticated, on a server of its own (METRICS_PORT: for a scraper on a private network); `ready()` before it answers. */
export function metricsOnlyServer(registry: MetricsSource): FastifyInstance {
  const app = Fastify({ logger: false, serverFactory: (handler) => http.createServer(handler) });
  metricsRoutes(registry)(app);
  return app;
}
