/**
 * A device agent as the original ones were written: the `websocket` package's
 * client, `client.connect(url, 'echo-protocol')` and `connection.sendUTF(...)`.
 * Collects what the server sends so tests can await the next message or the close.
 */
import websocket from 'websocket';

const { client: WebSocketClient } = websocket;

export interface ServerMessage {
  code: number;
  content: unknown;
  id?: string;
  seq?: number;
}

export interface DeviceClient {
  connection: websocket.connection;
  send(message: unknown): void;
  sendRaw(text: string): void;
  /** Resolves with the next message from the server (or rejects after `timeoutMs`). */
  next(timeoutMs?: number): Promise<ServerMessage>;
  /** Resolves when the socket closes, with the code and reason from the server. */
  closed: Promise<{ code: number; reason: string }>;
  /** Messages received and not yet taken with `next()`. */
  pending(): ServerMessage[];
  close(): void;
}

export function connectDevice(url: string, protocol: string | null = 'echo-protocol'): Promise<DeviceClient> {
  return new Promise((resolve, reject) => {
    const client = new WebSocketClient({ maxReceivedFrameSize: 1024 * 1024, maxReceivedMessageSize: 4 * 1024 * 1024 });
    client.on('connectFailed', (err) => reject(err));
    client.on('connect', (connection) => {
      const inbox: ServerMessage[] = [];
      const waiters: ((m: ServerMessage) => void)[] = [];
      let resolveClosed!: (v: { code: number; reason: string }) => void;
      const closed = new Promise<{ code: number; reason: string }>((r) => (resolveClosed = r));
      connection.on('message', (message) => {
        if (message.type !== 'utf8') return;
        const parsed = JSON.parse(message.utf8Data) as ServerMessage;
        const waiter = waiters.shift();
        if (waiter) waiter(parsed);
        else inbox.push(parsed);
      });
      connection.on('close', (code, reason) => resolveClosed({ code, reason }));
      connection.on('error', () => undefined);
      resolve({
        connection,
        send: (message) => connection.sendUTF(JSON.stringify(message)),
        sendRaw: (text) => connection.sendUTF(text),
        next(timeoutMs = 5_000) {
          const queued = inbox.shift();
          if (queued) return Promise.resolve(queued);
          return new Promise((res, rej) => {
            const timer = setTimeout(() => {
              waiters.splice(waiters.indexOf(wrapped), 1);
              rej(new Error(`no message from the server within ${timeoutMs} ms`));
            }, timeoutMs);
            const wrapped = (m: ServerMessage) => {
              clearTimeout(timer);
              res(m);
            };
            waiters.push(wrapped);
          });
        },
        closed,
        pending: () => [...inbox],
        close: () => connection.close(),
      });
    });
    client.connect(url, protocol === null ? undefined : protocol);
  });
}

/** Connects and authenticates; resolves once the server answered 200. */
export async function connectAuthenticated(url: string, deviceId: string, token: string): Promise<DeviceClient> {
  const device = await connectDevice(url);
  device.send({ type: 'device', deviceId, deviceToken: token });
  const answer = await device.next();
  if (answer.code !== 200) throw new Error(`authentication failed: ${JSON.stringify(answer)}`);
  return device;
}
