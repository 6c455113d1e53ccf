/**
 * `/v1/webhooks`: endpoints that receive the change feed's events (src/webhooks/). The
 * secret is write-only: no answer and no log line holds it.
 */
import crypto from 'node:crypto';
import type { RouteRegistrar } from '../request-context.js';
import type { Pool } from '../../db/pool.js';
import { deliveriesQuery, webhookCreateBody, webhookIdParam, webhookUpdateBody } from '../../webhooks/schemas.js';
import { eventBody, postEvent, type WebhookSettings } from '../../webhooks/sender.js';
import { refusedLiteral } from '../../webhooks/destination-guard.js';
import type { SecretBox } from '../../webhooks/secret-box.js';
import * as webhooksSql from '../../webhooks/webhooks-sql.js';
import { accountScopeOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { validate } from '../validate.js';

export function webhookView(row: webhooksSql.WebhookRow) {
  return {
    id: row.id,
    url: row.url,
    events: row.eventTypes,
    enabled: row.enabled,
    accounts: row.accounts,
    disabledReason: row.disabledReason,
    lastEventId: row.cursor,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function deliveryView(row: webhooksSql.DeliveryRow) {
  return row;
}

/** An IP literal in a refused range is a 400 at once; a name is checked where it connects, at every delivery. */
function checkDestination(url: string | undefined, settings: WebhookSettings): void {
  if (url === undefined || settings.allowPrivate) return;
  const refused = refusedLiteral(new URL(url).hostname);
  if (refused !== undefined) {
    throw new ApiError('VALIDATION_FAILED', `url: ${refused} is in a loopback, private, link-local or reserved range (WEBHOOK_ALLOW_PRIVATE is off)`);
  }
}

export function webhookRoutes(deps: { pool: Pool; settings: WebhookSettings; secrets: SecretBox; changed(): void }): RouteRegistrar {
  const { pool, settings, secrets, changed } = deps;
  return (app) => {
    const notFound = (id: string) => new ApiError('NOT_FOUND', `No webhook "${id}"`);

    app.post('/v1/webhooks', async (req, reply) => {
      const body = validate(webhookCreateBody, req.body);
      checkDestination(body.url, settings);
      const id = crypto.randomUUID();
      const row = await webhooksSql.insertWebhook(pool, id, { ...body, secret: secrets.seal(body.secret, id) }, accountScopeOf(req));
      changed();
      return reply.code(201).send(webhookView(row));
    });
    app.get('/v1/webhooks', async (req) => {
      return { items: (await webhooksSql.listWebhooks(pool, accountScopeOf(req))).map(webhookView) };
    });
    app.get('/v1/webhooks/:id', async (req) => {
      const { id } = validate(webhookIdParam, req.params, 'params');
      const row = await webhooksSql.getWebhook(pool, id, accountScopeOf(req));
      if (!row) throw notFound(id);
      return webhookView(row);
    });
    app.patch('/v1/webhooks/:id', async (req) => {
      const { id } = validate(webhookIdParam, req.params, 'params');
      const body = validate(webhookUpdateBody, req.body);
      checkDestination(body.url, settings);
      const sealed = body.secret === undefined ? body : { ...body, secret: secrets.seal(body.secret, id) };
      const row = await webhooksSql.updateWebhook(pool, id, sealed, accountScopeOf(req));
      if (!row) throw notFound(id);
      changed();
      return webhookView(row);
    });
    app.delete('/v1/webhooks/:id', async (req, reply) => {
      const { id } = validate(webhookIdParam, req.params, 'params');
      if (!(await webhooksSql.deleteWebhook(pool, id, accountScopeOf(req)))) throw notFound(id);
      return reply.code(204).send();
    });
    app.get('/v1/webhooks/:id/deliveries', async (req) => {
      const { id } = validate(webhookIdParam, req.params, 'params');
      const query = validate(deliveriesQuery, req.query, 'query');
      if (!(await webhooksSql.getWebhook(pool, id, accountScopeOf(req)))) throw notFound(id);
      const rows = await webhooksSql.listDeliveries(pool, id, { status: query.status, limit: query.limit, before: query.cursor });
      return { items: rows.map(deliveryView), nextCursor: rows.length === query.limit ? String(rows.at(-1)!.eventId) : null };
    });
    // A signed `webhook.test` event (id 0: never a real event) sent now, outside the endpoint's
    // event order and not recorded; the answer says what the receiver did. Bounded like any delivery.
    app.post('/v1/webhooks/:id/test', async (req) => {
      const { id } = validate(webhookIdParam, req.params, 'params');
      const row = await webhooksSql.getWebhook(pool, id, accountScopeOf(req));
      const stored = row && (await webhooksSql.getWebhookSecret(pool, id));
      if (!row || stored === undefined) throw notFound(id);
      const body = eventBody({ id: 0, type: 'webhook.test', at: new Date(), data: { webhookId: id } });
      const result = await postEvent(settings, { url: row.url, secret: secrets.open(stored, id) }, 0, body, 1);
      return { delivered: result.ok, statusCode: result.statusCode ?? null, error: result.ok ? null : result.error };
    });
  };
}
