import type { FastifyRequest } from 'fastify';
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import type { EventFeed } from '../../events/feed.js';
import type { EventFilter } from '../../events/filter.js';
import { eventBounds } from '../../events/events-sql.js';
import type { EventType } from '../../events/types.js';
import { accountScopeOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { eventIdText, eventsQuery } from '../schemas.js';
import { validate } from '../validate.js';

/** Names the oldest id kept on a 410, so a client knows where the feed starts again. */
export const OLDEST_EVENT_ID_HEADER = 'X-Iotws-Oldest-Event-Id';

/**
 * `GET /v1/events`: the change feed as Server-Sent Events (see `src/events/`). Resumes
 * after `Last-Event-ID` (what EventSource sends on reconnect) or `?after=`; without
 * either it starts with the next event.
 */
export function eventRoutes(deps: { pool: Pool; feed: EventFeed }): RouteRegistrar {
  const { pool, feed } = deps;
  return (app) => {
    app.get('/v1/events', async (req, reply) => {
      const query = validate(eventsQuery, req.query, 'query');
      const lastEventId = req.headers['last-event-id'];
      if (lastEventId !== undefined && !eventIdText.safeParse(lastEventId).success) {
        throw new ApiError('VALIDATION_FAILED', 'Last-Event-ID: an event id (digits)');
      }
      const requested = lastEventId ?? query.after;
      const field = lastEventId === undefined ? 'after' : 'Last-Event-ID';

      const filter: EventFilter = {
        ...(query.types === undefined ? {} : { types: [...new Set(query.types.split(',').map((t) => t.trim()))] as EventType[] }),
        ...(query.deviceId === undefined ? {} : { deviceId: query.deviceId }),
        ...(query.actuationId === undefined ? {} : { actuationId: query.actuationId }),
        ...(query.source === undefined ? {} : { source: query.source }),
        ...accountLimit(req),
      };

      const bounds = await eventBounds(pool);
      let after = bounds.newest;
      if (requested !== undefined) {
        after = Number(requested);
        if (after > bounds.newest) throw new ApiError('VALIDATION_FAILED', `${field}: no event has this id yet (the newest is ${bounds.newest})`);
        if (after + 1 < bounds.oldest) {
          reply.raw.setHeader(OLDEST_EVENT_ID_HEADER, String(bounds.oldest));
          throw new ApiError('EVENTS_GONE', `${field}: the events after ${after} are no longer kept; the oldest kept is ${bounds.oldest} (resume with after=${bounds.oldest - 1} once resynchronised)`);
        }
      }

      // Checked before the headers go out, so that a full instance can still answer with an error.
      if (feed.subscriberCount() >= feed.maxSubscribers) throw new ApiError('TOO_MANY_SUBSCRIBERS');
      // From here on the raw response is the stream's: fastify sends nothing more for it.
      reply.hijack();
      const res = reply.raw;
      res.statusCode = 200;
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      // Proxies (nginx) must pass each event on at once.
      res.setHeader('X-Accel-Buffering', 'no');
      res.flushHeaders();
      res.socket?.setNoDelay(true);
      // The reconnection delay EventSource uses; a comment so the client sees the stream open.
      res.write('retry: 1000\n: connected\n\n');
      if (!feed.subscribe(res, filter, after)) res.end();
    });
  };
}

/** A key limited to accounts sees only events of its accounts (filtered in SQL for the backlog, by the same filter live). */
function accountLimit(req: FastifyRequest): Pick<EventFilter, 'accounts'> {
  const accounts = accountScopeOf(req);
  return accounts === null ? {} : { accounts };
}
