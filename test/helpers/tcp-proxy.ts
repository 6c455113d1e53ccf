/**
 * A real TCP proxy in front of PostgreSQL, so a test can take the database away
 * from a running server (`stop()`: connections reset, new ones refused), give it
 * back (`start()` on the same port), or make it slow (`latencyMs`: every answer
 * from the database is held that long, in order, so a test can act while a
 * server's query is in flight).
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Delay applied to data from the target from now on. (Default: 0) */
  latencyMs: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;

  const proxy = {
    latencyMs: 0,
    get port() {
      return port;
    },
    start: listen,
    async stop() {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };

  function listen() {
    return new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => undefined);
        }
        client.pipe(upstream);
        // One queue per connection: answers keep their order even when the latency changes between them.
        const held: { at: number; chunk: Buffer }[] = [];
        let timer: NodeJS.Timeout | undefined;
        const release = () => {
          timer = undefined;
          while (held.length > 0 && held[0]!.at <= Date.now()) {
            const { chunk } = held.shift()!;
            if (client.writable) client.write(chunk);
          }
          if (held.length > 0) timer = setTimeout(release, held[0]!.at - Date.now());
        };
        upstream.on('data', (chunk: Buffer) => {
          held.push({ at: Math.max(held.at(-1)?.at ?? 0, Date.now() + proxy.latencyMs), chunk });
          if (!timer) release();
        });
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
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
