/**
 * A real TCP proxy in front of PostgreSQL, so a test can take the database away
 * from a running server (`stop()`: connections reset, new ones refused), give it
 * back (`start()` on the same port), make it slow (`latencyMs`: every answer from the
 * database is held that long, in order, so a test can act while a server's query is
 * in flight; `requestLatencyMs` the same for data to the database), or make it
 * silent (`blackhole()`: nothing is forwarded, but every socket stays open and new
 * connections are accepted, as when a link or a NAT drops packets; `forward()` heals
 * it, and what was held goes through in order, as TCP's retransmissions would), or
 * kill the connections open now without a sign (`freezeConnections()`: they never
 * forward again, new ones work, as when a NAT forgets a flow).
 */
import net from 'node:net';

export type BlackholeDirection = 'both' | 'toTarget' | 'fromTarget';

export interface TcpProxy {
  readonly port: number;
  /** Delay applied to data from the target from now on. (Default: 0) */
  latencyMs: number;
  /** Delay applied to data to the target from now on. (Default: 0) */
  requestLatencyMs: number;
  /** Stops forwarding in one or both directions; sockets stay open, data is held. */
  blackhole(direction?: BlackholeDirection): void;
  /** Forwards again (held data first, in order). */
  forward(): void;
  /** The connections open now stop forwarding for good, silently; new connections are not affected. */
  freezeConnections(): void;
  /** Open client connections. */
  readonly connections: number;
  /** Client connections accepted so far. */
  readonly accepted: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Lane {
  frozen: boolean;
  held: { at: number; chunk: Buffer }[];
  timer: NodeJS.Timeout | undefined;
  release(): void;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const lanes = { toTarget: new Set<Lane>(), fromTarget: new Set<Lane>() };
  const blocked = { toTarget: false, fromTarget: false };
  let server: net.Server | undefined;
  let port = 0;
  let clients = 0;
  let accepted = 0;
  // A close seen while its direction is blackholed reaches the other side only when healed, as a FIN would.
  const heldCloses = new Set<() => void>();

  const proxy: TcpProxy = {
    latencyMs: 0,
    requestLatencyMs: 0,
    get port() {
      return port;
    },
    get connections() {
      return clients;
    },
    get accepted() {
      return accepted;
    },
    freezeConnections() {
      for (const lane of [...lanes.toTarget, ...lanes.fromTarget]) lane.frozen = true;
    },
    blackhole(direction = 'both') {
      if (direction !== 'fromTarget') blocked.toTarget = true;
      if (direction !== 'toTarget') blocked.fromTarget = true;
    },
    forward() {
      blocked.toTarget = blocked.fromTarget = false;
      for (const lane of [...lanes.toTarget, ...lanes.fromTarget]) lane.release();
      for (const close of [...heldCloses]) close();
      heldCloses.clear();
    },
    start: listen,
    async stop() {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };

  /** One queue per connection and direction: data keeps its order even when the delay changes between chunks. */
  function makeLane(direction: 'toTarget' | 'fromTarget', from: net.Socket, to: net.Socket, delay: () => number): Lane {
    const lane: Lane = {
      frozen: false,
      held: [],
      timer: undefined,
      release() {
        clearTimeout(lane.timer);
        lane.timer = undefined;
        if (blocked[direction] || lane.frozen) return;
        while (lane.held.length > 0 && lane.held[0]!.at <= Date.now()) {
          const { chunk } = lane.held.shift()!;
          if (to.writable) to.write(chunk);
        }
        if (lane.held.length > 0) lane.timer = setTimeout(lane.release, lane.held[0]!.at - Date.now());
      },
    };
    lanes[direction].add(lane);
    from.on('data', (chunk: Buffer) => {
      lane.held.push({ at: Math.max(lane.held.at(-1)?.at ?? 0, Date.now() + delay()), chunk });
      if (!lane.timer) lane.release();
    });
    from.on('close', () => {
      clearTimeout(lane.timer);
      lanes[direction].delete(lane);
    });
    return lane;
  }

  function listen() {
    return new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        clients++;
        accepted++;
        client.on('close', () => clients--);
        const upstream = net.connect(target.port, target.host);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => undefined);
        }
        makeLane('toTarget', client, upstream, () => proxy.requestLatencyMs);
        makeLane('fromTarget', upstream, client, () => proxy.latencyMs);
        const propagate = (direction: 'toTarget' | 'fromTarget', to: net.Socket) => () => {
          if (blocked[direction]) heldCloses.add(() => to.destroy());
          else to.destroy();
        };
        client.on('close', propagate('toTarget', upstream));
        upstream.on('close', propagate('fromTarget', client));
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });
  }

  await listen();
  return proxy;
}
