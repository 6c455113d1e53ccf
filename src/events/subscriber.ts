/**
 * One SSE subscriber of the change feed. Modes:
 * - `catching_up`: reads its backlog (events after its cursor, up to the feed's live
 *   position) from the database, filtered there, a page at a time, each page only once
 *   the socket has taken the previous one;
 * - `live`: gets what the feed reads for every subscriber of this instance, filtered here;
 * - `closed`: the client left, it was dropped, or the server is shutting down.
 *
 * The cursor is the last id this subscriber has passed (delivered, or filtered out), so
 * nothing is delivered twice on the switch from catching up to live, and nothing is
 * skipped: the switch happens with no await between reading the feed's position and
 * joining it, and the feed offers each batch to live subscribers in the same tick as it
 * moves its position.
 *
 * Bounded: what is written and not yet taken by the socket (`writableLength`) never
 * grows past `maxBufferedBytes` plus one batch. A live subscriber over the bound, or one
 * catching up whose socket has not drained below half the bound within `stallMs`, gets
 * a final `dropped` event and is disconnected (the socket is destroyed if even that is
 * not taken within `stallMs`); it reconnects with `Last-Event-ID` and catches up.
 */
import type { ServerResponse } from 'node:http';
import type { EventFilter } from './filter.js';
import { matchesFilter } from './filter.js';
import type { EventPage } from './events-sql.js';
import type { FeedEvent } from './types.js';

export type DropReason = 'slow_subscriber' | 'shutting_down' | 'read_failed';

export interface SubscriberOptions {
  res: ServerResponse;
  filter: EventFilter;
  /** Last id the client has (its `Last-Event-ID` or `?after=`), or the newest id for a new client. */
  cursor: number;
  maxBufferedBytes: number;
  stallMs: number;
  heartbeatMs: number;
  /** The feed's live position: every event up to it has been offered to live subscribers. */
  livePosition(): number;
  /** The next page of ids after `after` (up to `upTo`), filtered; the cursor moves to its `scannedTo`. */
  readBacklog(after: number, upTo: number, filter: EventFilter): Promise<EventPage>;
  onClosed(subscriber: Subscriber, reason: DropReason | 'client_left'): void;
}

export interface Subscriber {
  readonly mode: 'catching_up' | 'live' | 'closed';
  readonly cursor: number;
  offerLive(batch: readonly FeedEvent[]): void;
  close(reason: DropReason): void;
}

export function startSubscriber(options: SubscriberOptions): Subscriber {
  const { res, filter, maxBufferedBytes } = options;
  let mode: Subscriber['mode'] = 'catching_up';
  let cursor = options.cursor;

  const heartbeat = setInterval(() => {
    if (mode === 'closed') return;
    res.write(': heartbeat\n\n');
    checkBound();
  }, options.heartbeatMs);
  heartbeat.unref();
  res.on('close', () => finish('client_left'));

  function write(event: FeedEvent): void {
    const body = JSON.stringify({ id: event.id, type: event.type, at: event.at, data: event.data });
    res.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${body}\n\n`);
  }

  function checkBound(): void {
    if (mode !== 'closed' && res.writableLength > maxBufferedBytes) drop('slow_subscriber');
  }

  function drop(reason: DropReason): void {
    if (mode === 'closed') return;
    res.write(`event: dropped\ndata: ${JSON.stringify({ reason, lastEventId: cursor })}\n\n`);
    finish(reason);
    res.end();
    // A client that does not read even the last event does not hold the socket either.
    setTimeout(() => res.destroy(), options.stallMs).unref();
  }

  function finish(reason: DropReason | 'client_left'): void {
    if (mode === 'closed') return;
    mode = 'closed';
    clearInterval(heartbeat);
    options.onClosed(subscriber, reason);
  }

  /** Read through a call: `mode` changes while a catch-up awaits. */
  function isClosed(): boolean {
    return mode === 'closed';
  }

  /** Resolves true once the socket holds less than half the bound; false after `stallMs` or on close. */
  function drained(): Promise<boolean> {
    if (res.writableLength <= maxBufferedBytes / 2) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        res.off('drain', onDrain);
        res.off('close', onClose);
        resolve(ok);
      };
      const onDrain = () => done(true);
      const onClose = () => done(false);
      const timer = setTimeout(() => done(false), options.stallMs);
      res.on('drain', onDrain);
      res.on('close', onClose);
    });
  }

  async function catchUp(): Promise<void> {
    try {
      for (;;) {
        const target = options.livePosition();
        while (cursor < target) {
          if (!(await drained())) return drop('slow_subscriber');
          if (isClosed()) return;
          const page = await options.readBacklog(cursor, target, filter);
          if (isClosed()) return;
          for (const event of page.events) write(event);
          cursor = Math.max(cursor, page.scannedTo);
        }
        // No await from reading the position to joining: no batch can slip between.
        if (options.livePosition() === target) {
          mode = 'live';
          return;
        }
      }
    } catch {
      drop('read_failed');
    }
  }

  const subscriber: Subscriber = {
    get mode() {
      return mode;
    },
    get cursor() {
      return cursor;
    },
    offerLive(batch) {
      if (mode !== 'live') return;
      for (const event of batch) {
        if (event.id <= cursor) continue;
        cursor = event.id;
        if (matchesFilter(event, filter)) write(event);
      }
      checkBound();
    },
    close(reason) {
      drop(reason);
    },
  };
  void catchUp();
  return subscriber;
}
