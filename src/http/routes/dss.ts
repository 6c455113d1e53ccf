import type { RouteRegistrar } from '../request-context.js';
import { z } from 'zod';
import type { Pool } from '../../db/pool.js';
import * as intervalSql from '../../dss/interval-sql.js';
import * as rulesSql from '../../dss/rules-sql.js';
import * as stateSql from '../../dss/state-sql.js';
import type { Rule } from '../../dss/rules.js';
import { checkInterval, dsnParam, eventLogQuery, idParam, ruleCreateBody, ruleUpdateBody, streamCreateBody, streamUpdateBody } from '../../dss/schemas.js';
import * as streamsSql from '../../dss/streams-sql.js';
import { ApiError } from '../errors.js';
import { validate } from '../validate.js';

/** The stream key is write-only: answers show at most its last 4 characters. */
export function maskStreamKey(key: string): string {
  return key.length >= 12 ? `****${key.slice(-4)}` : '****';
}

/**
 * A stream URL fit to show: a password in its userinfo (and a `stream_key` query parameter,
 * which validation refuses but an older row might hold) become `****`. Like the key, they are write-only.
 */
export function redactStreamUrl(url: string): string {
  if (!URL.canParse(url)) return url;
  const u = new URL(url);
  if (u.password === '' && !u.searchParams.has('stream_key')) return url;
  if (u.password !== '') u.password = '****';
  if (u.searchParams.has('stream_key')) u.searchParams.set('stream_key', '****');
  return u.toString();
}

export function streamView(row: streamsSql.StreamRow) {
  return {
    id: row.id,
    name: row.name,
    url: redactStreamUrl(row.url),
    streamKey: maskStreamKey(row.streamKey),
    enabled: row.enabled,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    status: {
      holder: row.holderInstanceId,
      connected: row.connected,
      connectedAt: row.connectedAt,
      lastEventAt: row.lastEventAt,
      lastSeq: row.lastSeq,
      events: row.events,
      heartbeats: row.heartbeats,
      errors: row.errors,
      lastError: row.lastError,
    },
  };
}

function ruleView(rule: Rule) {
  return rule;
}

/** `/v1/dss/streams` and `/v1/rules`. `changed` tells the DSS part to look again at once. */
export function dssRoutes(deps: { pool: Pool; changed: { streams(): void; rules(): void } }): RouteRegistrar {
  const { pool, changed } = deps;
  return (app) => {
    app.post('/v1/dss/streams', async (req, reply) => {
      const body = validate(streamCreateBody, req.body);
      const row = await streamsSql.insertStream(pool, body);
      changed.streams();
      return reply.code(201).send(streamView(row));
    });
    app.get('/v1/dss/streams', async () => {
      return { items: (await streamsSql.listStreams(pool)).map(streamView) };
    });
    app.get('/v1/dss/streams/:id', async (req) => {
      const { id } = validate(idParam, req.params, 'params');
      const row = await streamsSql.getStream(pool, id);
      if (!row) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
      return streamView(row);
    });
    app.patch('/v1/dss/streams/:id', async (req) => {
      const { id } = validate(idParam, req.params, 'params');
      const body = validate(streamUpdateBody, req.body);
      const row = await streamsSql.updateStream(pool, id, body);
      if (!row) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
      changed.streams();
      return streamView(row);
    });
    app.get('/v1/dss/streams/:id/events', async (req) => {
      const { id } = validate(idParam, req.params, 'params');
      const query = validate(eventLogQuery, req.query, 'query');
      if (!(await streamsSql.getStream(pool, id))) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
      const items = await stateSql.listLoggedEvents(pool, id, {
        dsn: query.dsn,
        propertyName: query.property,
        before: query.cursor === undefined ? undefined : Number(query.cursor),
        limit: query.limit,
      });
      return { items, nextCursor: items.length === query.limit ? String(items[items.length - 1]!.seq) : null };
    });
    app.get('/v1/dss/devices/:dsn', async (req) => {
      const { dsn } = validate(dsnParam, req.params, 'params');
      const state = await stateSql.getDeviceState(pool, dsn);
      if (!state) throw new ApiError('NOT_FOUND', `No DSS state for device "${dsn}"`);
      return state;
    });
    app.delete('/v1/dss/streams/:id', async (req, reply) => {
      const { id } = validate(idParam, req.params, 'params');
      if (!(await streamsSql.deleteStream(pool, id))) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
      changed.streams();
      return reply.code(204).send();
    });

    app.post('/v1/rules', async (req, reply) => {
      const body = validate(ruleCreateBody, req.body);
      const rule = await rulesSql.insertRule(pool, body);
      changed.rules();
      return reply.code(201).send(ruleView(rule));
    });
    app.get('/v1/rules', async () => {
      return { items: (await rulesSql.listRules(pool)).map(ruleView) };
    });
    app.get('/v1/rules/:id', async (req) => {
      const { id } = validate(idParam, req.params, 'params');
      const rule = await rulesSql.getRule(pool, id);
      if (!rule) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
      return rule.every === null ? ruleView(rule) : { ...ruleView(rule), interval: await intervalSql.recentEvaluations(pool, rule.id) };
    });
    app.patch('/v1/rules/:id', async (req) => {
      const { id } = validate(idParam, req.params, 'params');
      const body = validate(ruleUpdateBody, req.body);
      if (body.match || body.every !== undefined) {
        const current = await rulesSql.getRule(pool, id);
        if (!current) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
        // A rule keeps its kind: its state (remembered values, or evaluations) belongs to it.
        if (body.every === null && current.every !== null) {
          throw new ApiError('VALIDATION_FAILED', 'every: an interval rule cannot become an event rule; create an event rule (without every) and delete this one');
        }
        if (body.every !== undefined && current.every === null) {
          throw new ApiError('VALIDATION_FAILED', 'every: an event rule cannot become an interval rule; create an interval rule and delete this one');
        }
        // The new match must suit the rule's kind.
        if (body.match) validate(z.object({}).superRefine((_, ctx) => checkInterval({ every: current.every ?? undefined, match: body.match }, ctx)), {});
      }
      const rule = await rulesSql.updateRule(pool, id, body);
      if (!rule) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
      changed.rules();
      return ruleView(rule);
    });
    app.delete('/v1/rules/:id', async (req, reply) => {
      const { id } = validate(idParam, req.params, 'params');
      if (!(await rulesSql.deleteRule(pool, id))) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
      changed.rules();
      return reply.code(204).send();
    });
  };
}
