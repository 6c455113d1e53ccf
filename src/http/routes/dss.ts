import { Router } from 'express';
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
export function dssRoutes(deps: { pool: Pool; changed: { streams(): void; rules(): void } }): Router {
  const { pool, changed } = deps;
  const router = Router();

  router.post('/v1/dss/streams', async (req, res) => {
    const body = validate(streamCreateBody, req.body);
    const row = await streamsSql.insertStream(pool, body);
    changed.streams();
    res.status(201).json(streamView(row));
  });
  router.get('/v1/dss/streams', async (_req, res) => {
    res.json({ items: (await streamsSql.listStreams(pool)).map(streamView) });
  });
  router.get('/v1/dss/streams/:id', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    const row = await streamsSql.getStream(pool, id);
    if (!row) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
    res.json(streamView(row));
  });
  router.patch('/v1/dss/streams/:id', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    const body = validate(streamUpdateBody, req.body);
    const row = await streamsSql.updateStream(pool, id, body);
    if (!row) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
    changed.streams();
    res.json(streamView(row));
  });
  router.get('/v1/dss/streams/:id/events', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    const query = validate(eventLogQuery, req.query, 'query');
    if (!(await streamsSql.getStream(pool, id))) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
    const items = await stateSql.listLoggedEvents(pool, id, {
      dsn: query.dsn,
      propertyName: query.property,
      before: query.cursor === undefined ? undefined : Number(query.cursor),
      limit: query.limit,
    });
    res.json({ items, nextCursor: items.length === query.limit ? String(items[items.length - 1]!.seq) : null });
  });
  router.get('/v1/dss/devices/:dsn', async (req, res) => {
    const { dsn } = validate(dsnParam, req.params, 'params');
    const state = await stateSql.getDeviceState(pool, dsn);
    if (!state) throw new ApiError('NOT_FOUND', `No DSS state for device "${dsn}"`);
    res.json(state);
  });
  router.delete('/v1/dss/streams/:id', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    if (!(await streamsSql.deleteStream(pool, id))) throw new ApiError('NOT_FOUND', `No DSS stream "${id}"`);
    changed.streams();
    res.status(204).end();
  });

  router.post('/v1/rules', async (req, res) => {
    const body = validate(ruleCreateBody, req.body);
    const rule = await rulesSql.insertRule(pool, body);
    changed.rules();
    res.status(201).json(ruleView(rule));
  });
  router.get('/v1/rules', async (_req, res) => {
    res.json({ items: (await rulesSql.listRules(pool)).map(ruleView) });
  });
  router.get('/v1/rules/:id', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    const rule = await rulesSql.getRule(pool, id);
    if (!rule) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
    res.json(rule.every === null ? ruleView(rule) : { ...ruleView(rule), interval: await intervalSql.recentEvaluations(pool, rule.id) });
  });
  router.patch('/v1/rules/:id', async (req, res) => {
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
    res.json(ruleView(rule));
  });
  router.delete('/v1/rules/:id', async (req, res) => {
    const { id } = validate(idParam, req.params, 'params');
    if (!(await rulesSql.deleteRule(pool, id))) throw new ApiError('NOT_FOUND', `No rule "${id}"`);
    changed.rules();
    res.status(204).end();
  });

  return router;
}
