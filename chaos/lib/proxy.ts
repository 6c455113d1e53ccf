/**
 * The chaos TCP proxy: sits between a server and PostgreSQL (or between devices and a
 * server) and misbehaves on demand, for every connection at once or for one.
 *
 * Modes (setMode):
 * - forward:   bytes pass both ways.
 * - refuse:    existing connections are destroyed and the listener is closed, so new
 *              connects get ECONNREFUSED (the database is down).
 * - reset:     existing connections are destroyed, and every new one is accepted and
 *              reset at once (a middlebox resetting everything).
 * - blackhole: nothing is forwarded in either direction and nothing is closed; bytes
 *              that arrive meanwhile are dropped, as on a broken link or a lost NAT
 *              entry. New connections are accepted and hang. Leaving the mode forwards
 *              again on the same sockets (whose streams lost what was dropped).
 * - slow:      every chunk, both directions, is held `delayMs` (order kept).
 * One connection can be blackholed on its own (`ProxiedConnection.blackhole`), e.g. the
 * LISTEN connection found by its PostgreSQL client port (`upstreamLocalPort`).
 */
import net from 'node:net';

export type ProxyMode = { kind: 'forward' } | { kind: 'refuse' } | { kind: 'reset' } | { kind: 'blackhole' } | { kind: 'slow'; delayMs: number };

export interface ProxiedConnection {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** The local port of the proxy's socket to the target: PostgreSQL's pg_stat_activity.client_port. */
  readonly upstreamLocalPort: number | undefined;
  /** Drop this connection's bytes from now on, both ways, keeping its sockets open. */
  blackhole(): void;
  /** Bytes dropped while blackholed. */
  readonly dropped: number;
}

export interface ChaosProxy {
  readonly port: number;
  readonly mode: ProxyMode;
  setMode(mode: ProxyMode): Promise<void>;
  /** Send new connections to another target (a load balancer moving on); existing ones stay. */
  retarget(target: { host: string; port: number }): void;
  connections(): ProxiedConnection[];
  close(): Promise<void>;
}

export async function startChaosProxy(initialTarget: { host: string; port: number }): Promise<ChaosProxy> {
  let target = initialTarget;
  let mode: ProxyMode = { kind: 'forward' };
  let server: net.Server | undefined;
  let port = 0;
  let closed = false;
  const connections = new Set<Connection>();

  interface Connection extends ProxiedConnection {
    destroy(): void;
  }

  function accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (mode.kind === 'reset') return void client.resetAndDestroy();
    const upstream = net.connect(target.port, target.host);
    upstream.on('error', () => undefined);
    let own = false;
    let dropped = 0;
    const connection: Connection = {
      client,
      upstream,
      get upstreamLocalPort() {
        return upstream.localPort;
      },
      get dropped() {
        return dropped;
      },
      blackhole: () => void (own = true),
      destroy() {
        client.destroy();
        upstream.destroy();
      },
    };
    connections.add(connection);
    const relay = (from: net.Socket, to: net.Socket) => {
      // One queue per direction, so a changing delay never reorders bytes.
      const held: { at: number; chunk: Buffer }[] = [];
      let timer: NodeJS.Timeout | undefined;
      const release = () => {
        timer = undefined;
        while (held.length > 0 && held[0]!.at <= Date.now()) {
          const { chunk } = held.shift()!;
          if (own || mode.kind === 'blackhole') dropped += chunk.length;
          else if (to.writable) to.write(chunk);
        }
        if (held.length > 0) timer = setTimeout(release, held[0]!.at - Date.now());
      };
      from.on('data', (chunk: Buffer) => {
        if (own || mode.kind === 'blackhole') return void (dropped += chunk.length);
        const delay = mode.kind === 'slow' ? mode.delayMs : 0;
        if (delay === 0 && held.length === 0) return void (to.writable && to.write(chunk));
        held.push({ at: Math.max(held.at(-1)?.at ?? 0, Date.now() + delay), chunk });
        if (!timer) timer = setTimeout(release, Math.max(0, held[0]!.at - Date.now()));
      });
      from.on('close', () => {
        clearTimeout(timer);
        to.destroy();
        connections.delete(connection);
      });
    };
    relay(client, upstream);
    relay(upstream, client);
  }

  async function listen(): Promise<void> {
    const s = net.createServer(accept);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.address() as net.AddressInfo).port;
    server = s;
  }

  async function unlisten(): Promise<void> {
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  await listen();
  return {
    get port() {
      return port;
    },
    get mode() {
      return mode;
    },
    async setMode(next) {
      mode = next;
      if (next.kind === 'refuse' || next.kind === 'reset') for (const c of connections) c.destroy();
      if (next.kind === 'refuse') await unlisten();
      else if (!server && !closed) await listen();
    },
    retarget(next) {
      target = next;
    },
    connections: () => [...connections],
    async close() {
      closed = true;
      for (const c of connections) c.destroy();
      await unlisten();
    },
  };
}
