/**
 * The change feed of one instance: reads new events once for all its subscribers and
 * offers each batch to those that are live (see `subscriber.ts` for one subscriber).
 *
 * It reads the ids after its position (a window at a time) when a sequencing pass
 * committed: this instance's own pass tells it directly (no wait for the NOTIFY), another
 * instance's through the NOTIFY on `iotws_events`; the NOTIFY of a pass whose ids a read
 * has already been started for reads nothing. When this instance's pass returned the events
 * it numbered (`passed`) and they follow the position, they are offered as they are, with
 * no read at all. Also every `pollMs`, and after the LISTEN
 * connection was replaced (`reread`), in case a notification was missed. Ids are gap-free and each
 * sequencing pass commits as a whole, after the previous one, so what is visible is
 * always every id up to some N: reading after the position can never skip one.
 * With no subscriber nothing is read; the position just follows the notifications.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import type { Pool } from '../db/pool.js';
import { eventBounds, readEvents, type SequencingPass } from './events-sql.js';
import type { EventFilter } from './filter.js';
import { startSubscriber, type DropReason, type Subscriber } from './subscriber.js';

export interface EventFeedOptions {
  pool: Pool;
  logger: Logger;
  /** Subscribers this instance serves at most (`EVENTS_MAX_SUBSCRIBERS`). */
  maxSubscribers: number;
  /** Bytes written to one subscriber and not yet taken by its socket before it is dropped (`EVENTS_SUBSCRIBER_BUFFER_BYTES`). */
  subscriberBufferBytes: number;
  /** SSE comment line this often (`EVENTS_HEARTBEAT_MS`). */
  heartbeatMs: number;
  /** A catching-up subscriber whose socket takes nothing for this long is dropped. */
  stallMs: number;
  /** Re-read this often without a notification. */
  pollMs: number;
  onSubscriberClosed?(reason: DropReason | 'client_left'): void;
}

export interface EventFeed {
  /** Reads the current position; call before serving subscribers. */
  start(): Promise<void>;
  /** A sequencing pass committed up to `lastId` (the NOTIFY payload, or this instance's own pass). */
  notified(lastId: number): void;
  /** This instance's own pass committed; with `pass.events`, what it numbered. */
  passed(pass: SequencingPass): void;
  /** Reads whatever is new, notified or not (the LISTEN connection was replaced: notifications may be lost). */
  reread(): void;
  /** A new SSE subscriber from `after`; undefined when the instance has `maxSubscribers` already. */
  subscribe(res: ServerResponse, filter: EventFilter, after: number): Subscriber | undefined;
  subscriberCount(): number;
  readonly maxSubscribers: number;
  /** Ends every stream (with a final `dropped` event, reason `shutting_down`) and stops reading. */
  close(): void;
}

const READ_BATCH = 1_000;
const BACKLOG_PAGE = 500;

export function makeEventFeed(options: EventFeedOptions): EventFeed {
  const { pool } = options;
  const log = options.logger.child({ component: 'events' });
  const subscribers = new Set<Subscriber>();
  let position = 0;
  let notifiedUpTo = 0;
  /** Every id up to this is read, or covered by a read started (or queued: `again`) after it was known committed. */
  let readRequested = 0;
  let reading = false;
  let again = false;
  let closed = false;
  let pollTimer: NodeJS.Timeout | undefined;

  async function read(): Promise<void> {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        if (subscribers.size === 0) {
          position = Math.max(position, notifiedUpTo);
          break;
        }
        for (;;) {
          const from = position;
          const page = await readEvents(pool, from, null, {}, READ_BATCH);
          if (page.scannedTo <= from) break;
          position = page.scannedTo;
          readRequested = Math.max(readRequested, position);
          for (const s of subscribers) s.offerLive(page.events);
          if (page.scannedTo - from < READ_BATCH) break;
        }
      } while (again && !closed);
    } catch (err) {
      readRequested = position;
      log.warn({ err }, 'events: could not read new events; the next notification or poll retries');
    } finally {
      reading = false;
    }
  }

  function notified(lastId: number): void {
    notifiedUpTo = Math.max(notifiedUpTo, lastId);
    // Usually the NOTIFY of this instance's own pass, which already told it: nothing new to read.
    if (lastId <= readRequested) return;
    readRequested = lastId;
    void read();
  }

  return {
    async start() {
      position = (await eventBounds(pool)).newest;
      pollTimer = setInterval(() => void read(), options.pollMs);
      pollTimer.unref();
    },
    notified,
    passed(pass) {
      if (pass.sequenced === 0) return;
      // Only when nothing is being read and they start right after the position: ids stay contiguous.
      if (pass.events && !reading && position === pass.lastId - pass.sequenced) {
        notifiedUpTo = Math.max(notifiedUpTo, pass.lastId);
        readRequested = Math.max(readRequested, pass.lastId);
        position = pass.lastId;
        for (const s of subscribers) s.offerLive(pass.events);
        return;
      }
      notified(pass.lastId);
    },
    reread() {
      void read();
    },
    subscribe(res, filter, after) {
      if (closed || subscribers.size >= options.maxSubscribers) return undefined;
      if (subscribers.size === 0) position = Math.max(position, notifiedUpTo);
      const subscriber = startSubscriber({
        res,
        filter,
        cursor: after,
        maxBufferedBytes: options.subscriberBufferBytes,
        stallMs: options.stallMs,
        heartbeatMs: options.heartbeatMs,
        livePosition: () => position,
        readBacklog: (from, upTo, f) => readEvents(pool, from, upTo, f, BACKLOG_PAGE),
        onClosed(s, reason) {
          subscribers.delete(s);
          options.onSubscriberClosed?.(reason);
        },
      });
      subscribers.add(subscriber);
      // Whatever was sequenced before this subscriber came is read now, not at the next notification.
      void read();
      return subscriber;
    },
    subscriberCount: () => subscribers.size,
    maxSubscribers: options.maxSubscribers,
    close() {
      closed = true;
      clearInterval(pollTimer);
      for (const s of [...subscribers]) s.close('shutting_down');
    },
  };
}
