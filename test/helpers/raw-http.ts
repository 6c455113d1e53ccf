/**
 * HTTP requests as a hostile client writes them: node:http for exact paths and headers
 * (fetch would normalise a URL and refuse some headers), and raw TCP for what node:http
 * would not send (a Content-Length the body does not honour).
 */
import http from 'node:http';
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: unknown;
  /** From the first byte written to the complete response. */
  elapsedMs: number;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One request with node:http; the path is sent as given. */
export function httpRequest(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, text, json: parseJson(text), elapsedMs: performance.now() - started });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`no answer to ${method} ${path} within 15 s`)));
    req.end(options.body);
  });
}

/**
 * Writes `head` (request line and headers, without the blank line) and `body` on a fresh
 * socket, does not end it, and resolves with the first complete response.
 */
export function tcpRequest(port: number, head: string, body: Buffer | string = '', timeoutMs = 15_000): Promise<RawResponse> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${timeoutMs} ms; got ${JSON.stringify(received.toString('latin1').slice(0, 200))}`));
    }, timeoutMs);
    const tryParse = (final: boolean) => {
      const text = received.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) {
        if (!final) return;
        clearTimeout(timer);
        return reject(new Error(`connection closed before a response: ${JSON.stringify(text)}`));
      }
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
      const bodyBytes = received.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      if (length === undefined ? !final : bodyBytes.length < length) return;
      clearTimeout(timer);
      socket.destroy();
      const bodyText = bodyBytes.subarray(0, length).toString('utf8');
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, text: bodyText, json: parseJson(bodyText), elapsedMs: performance.now() - started });
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      tryParse(false);
    });
    socket.on('close', () => tryParse(true));
    socket.on('error', () => undefined);
    socket.write(`${head}\r\n\r\n`);
    if (body.length > 0) socket.write(body);
  });
}
