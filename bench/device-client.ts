/**
 * Simulated devices for the benches: a child process (forked by bench/run.ts, IPC
 * channel only) that holds up to ~19,900 device sockets to 127.0.0.1.
 *
 * The WebSocket client is written on raw `net` sockets (RFC 6455 handshake with
 * Sec-WebSocket-Accept and subprotocol checked, masked client frames) rather than
 * a client library, so that the load generator spends as little of this 2-core
 * machine's CPU and memory as possible and the server under test is what limits
 * the rate. The same client is used against every server, so ratios are fair.
 *
 * Protocol with the parent (every request answered once, every phase bounded):
 *   {op:'mint', privateKeyPem, ids, warmupIds}   -> {op:'minted', ms}
 *   {op:'connect', port, set:'devices'|'warmup', concurrency, perDeviceTimeoutMs, deadlineMs}
 *                                                -> {op:'connected', ...ConnectResult}
 *   {op:'status'}                                -> {op:'status', open, dropped}
 *   {op:'reset'}                                 -> {op:'reset', closed}
 *   {op:'listen', ack, keepLatencies, holdAcks?} -> {op:'listening'}   (counters reset)
 *   {op:'received', latencies}                   -> {op:'received', ...Receipts}  (latencies and ids: [] unless asked)
 *   {op:'ackHeld'}                               -> {op:'ackedHeld', acks}  (acks every actuation held since listen)
 * Once authenticated, a device parses the server's frames: every actuation
 * (`code` 1024) is counted, its latency taken from a `t` param (a send time stamped
 * by whoever created it: performance.timeOrigin + performance.now() in ms) and,
 * with `ack`, answered with `{"type":"ack","id","statusCode":200}`; with `holdAcks` instead,
 * kept unanswered until `ackHeld` answers them all at once (the ceilings bench's ack mix).
 * The process exits when the parent goes away (IPC disconnect or a changed ppid).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { mintDeviceToken } from '../src/gateway/device-token.js';
import { exitWithParent } from './lib/ipc.js';

export interface ConnectResult {
  ok: number;
  failed: number;
  /** Local ports skipped because something else on the machine held them. */
  portRetries: number;
  /** Failure reasons and their counts (bounded to a few distinct reasons). */
  errors: Record<string, number>;
  /** Wall-clock ms (performance.timeOrigin based, sub-ms) of the first connect and the last 200. */
  firstStartMs: number;
  lastDoneMs: number;
  /** Per-device connect+auth latencies in ms, sorted sample (at most 2,000 values). */
  latencySample: number[];
}

/** Actuations received by this client's devices since the last `listen`. */
export interface Receipts {
  count: number;
  /** Frames that were not actuations or had no numeric `t` param. */
  other: number;
  firstMs: number;
  lastMs: number;
  /** now - t per actuation, ms, in arrival order (only with keepLatencies; at most MAX_LATENCIES). */
  latencies: number[];
  /** The actuation id of each latency, same order (asked for with `latencies`). */
  ids?: string[];
}

export type ClientRequest =
  | { op: 'mint'; privateKeyPem: string; ids: string[]; warmupIds: string[]; accountId: string }
  | {
      op: 'connect';
      port: number;
      set: 'devices' | 'warmup';
      concurrency: number;
      perDeviceTimeoutMs: number;
      deadlineMs: number;
      /** Local ports [from, to) to bind, one per connection; absent: the kernel picks. */
      localPorts?: { from: number; to: number };
      /** Source address to bind with localPorts (default 127.0.0.1). */
      localAddress?: string;
    }
  | { op: 'status' }
  | { op: 'reset' }
  | { op: 'listen'; ack: boolean; keepLatencies: boolean; holdAcks?: boolean }
  | { op: 'received'; latencies: boolean }
  | { op: 'ackHeld' };

export type ClientReply =
  | { op: 'minted'; ms: number }
  | ({ op: 'connected' } & ConnectResult)
  | { op: 'status'; open: number; dropped: number }
  | { op: 'reset'; closed: number }
  | { op: 'listening' }
  | { op: 'ackedHeld'; acks: number }
  | ({ op: 'received' } & Receipts)
  | { op: 'error'; message: string };

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const now = () => performance.timeOrigin + performance.now();

/** Pre-built, unmasked auth message payloads, one per device. */
const payloads: Record<'devices' | 'warmup', Buffer[]> = { devices: [], warmup: [] };
const open = new Set<net.Socket>();
let dropped = 0;

const MAX_LATENCIES = 1_000_000;
const listening = { ack: false, keepLatencies: false, holdAcks: false };
let receipts: Receipts = { count: 0, other: 0, firstMs: Number.NaN, lastMs: Number.NaN, latencies: [] };
let ids: string[] = [];
let held: { socket: net.Socket; id: unknown }[] = [];

/** An authenticated device's server frames: actuations counted (and acked when asked); pings answered. */
function onDeviceFrame(socket: net.Socket, opcode: number, payload: Buffer): void {
  if (opcode === 9) return void socket.write(controlFrame(0x8a, payload));
  if (opcode !== 1) return;
  const at = now();
  let message: { code?: unknown; id?: unknown; content?: { content?: { params?: { name: string; value: unknown }[] } } };
  try {
    message = JSON.parse(payload.toString('utf8')) as typeof message;
  } catch {
    receipts.other++;
    return;
  }
  if (message.code !== 1024) {
    receipts.other++;
    return;
  }
  const t = Number(message.content?.content?.params?.find((p) => p.name === 't')?.value);
  if (!Number.isFinite(t)) receipts.other++;
  receipts.count++;
  if (Number.isNaN(receipts.firstMs)) receipts.firstMs = at;
  receipts.lastMs = at;
  if (listening.keepLatencies && Number.isFinite(t) && receipts.latencies.length < MAX_LATENCIES) {
    receipts.latencies.push(at - t);
    ids.push(String(message.id));
  }
  if (listening.ack) socket.write(ackFrame(message.id));
  else if (listening.holdAcks) held.push({ socket, id: message.id });
}

function ackFrame(id: unknown): Buffer {
  return textFrame(Buffer.from(JSON.stringify({ type: 'ack', id, statusCode: 200 })));
}

/** Answers every held actuation (on sockets still open); returns how many acks went out. */
function ackHeld(): number {
  let acks = 0;
  for (const { socket, id } of held) {
    if (socket.destroyed) continue;
    socket.write(ackFrame(id));
    acks++;
  }
  held = [];
  return acks;
}

/** A masked control frame (pong) with a payload under 126 bytes. */
function controlFrame(first: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(6 + payload.length);
  frame[0] = first;
  frame[1] = 0x80 | payload.length;
  crypto.randomBytes(4).copy(frame, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ frame[2 + (i & 3)]!;
  return frame;
}

function send(reply: ClientReply): void {
  process.send?.(reply);
}

/** A masked text frame (client frames must be masked; a fresh random key per frame). */
function textFrame(payload: Buffer): Buffer {
  const len = payload.length;
  const headerLen = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLen + 4 + len);
  frame[0] = 0x81;
  if (len < 126) {
    frame[1] = 0x80 | len;
  } else if (len < 65_536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = crypto.randomBytes(4);
  mask.copy(frame, headerLen);
  const offset = headerLen + 4;
  for (let i = 0; i < len; i++) frame[offset + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** Parses one complete unmasked server frame at the start of `buf`; null if incomplete. */
function parseFrame(buf: Buffer): { opcode: number; payload: Buffer; size: number } | null {
  if (buf.length < 2) return null;
  const opcode = buf[0]! & 0x0f;
  let len = buf[1]! & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    offset = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  if (buf[1]! & 0x80) return { opcode: -1, payload: Buffer.alloc(0), size: 0 }; // servers must not mask
  if (buf.length < offset + len) return null;
  return { opcode, payload: buf.subarray(offset, offset + len), size: offset + len };
}

/** A local port that could not be bound or used for this connection; the caller tries the next one. */
class LocalPortUnavailable extends Error {}

/**
 * Connects one device and authenticates; resolves with its latency in ms or rejects
 * with a short reason. With `localPort`, the socket is bound to it: the kernel's own
 * ephemeral port search costs more CPU than everything else the client does once
 * ~20,000 ports are in use, and that CPU is taken from the server under test.
 */
function connectDevice(port: number, payload: Buffer, timeoutMs: number, localPort: number | undefined, started = now(), localAddress = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const expectedAccept = crypto.createHash('sha1').update(key + GUID).digest('base64');
    const socket = net.connect({ host: '127.0.0.1', port, ...(localPort === undefined ? {} : { localAddress, localPort }) });
    socket.setNoDelay(true);
    let phase: 'handshake' | 'auth' | 'open' = 'handshake';
    let buffered: Buffer = Buffer.alloc(0);

    const timer = setTimeout(() => fail('timeout'), timeoutMs);
    function fail(reason: string): void {
      if (phase === 'open') return;
      clearTimeout(timer);
      phase = 'open'; // settled
      socket.destroy();
      reject(new Error(reason));
    }

    socket.once('connect', () => {
      socket.write(
        `GET /bench HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: echo-protocol\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (phase === 'open') {
        // Authenticated (or settled after a failure, then `open` no longer holds the socket).
        if (!open.has(socket)) return void (buffered = Buffer.alloc(0));
        return deviceFrames();
      }
      if (phase === 'handshake') {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) {
          if (buffered.length > 8_192) fail('handshake: response too long');
          return;
        }
        const head = buffered.subarray(0, end).toString('latin1');
        buffered = buffered.subarray(end + 4);
        const [statusLine, ...lines] = head.split('\r\n');
        if (!/^HTTP\/1\.1 101 /.test(statusLine ?? '')) return fail(`handshake: ${statusLine}`);
        const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        if (headers.get('sec-websocket-accept') !== expectedAccept) return fail('handshake: bad Sec-WebSocket-Accept');
        if (headers.get('sec-websocket-protocol') !== 'echo-protocol') return fail('handshake: subprotocol not echo-protocol');
        phase = 'auth';
        socket.write(textFrame(payload));
      }
      if (phase === 'auth') {
        const frame = parseFrame(buffered);
        if (frame === null) {
          if (buffered.length > 65_536) fail('auth: reply too long');
          return;
        }
        if (frame.opcode === 8) return fail(`auth: closed by server (${frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005})`);
        if (frame.opcode !== 1) return fail(`auth: unexpected opcode ${frame.opcode}`);
        let code: unknown;
        try {
          code = (JSON.parse(frame.payload.toString('utf8')) as { code?: unknown }).code;
        } catch {
          return fail('auth: reply not JSON');
        }
        if (code !== 200) return fail(`auth: code ${String(code)}`);
        clearTimeout(timer);
        phase = 'open';
        buffered = buffered.subarray(frame.size);
        open.add(socket);
        resolve(now() - started);
        deviceFrames(); // an actuation may have come in the same chunk as the 200
      }
    });
    function deviceFrames(): void {
      for (let frame = parseFrame(buffered); frame !== null; frame = parseFrame(buffered)) {
        if (frame.opcode === -1) return void socket.destroy();
        buffered = buffered.subarray(frame.size);
        onDeviceFrame(socket, frame.opcode, frame.payload);
      }
    }
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (phase === 'handshake' && localPort !== undefined && (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL')) {
        clearTimeout(timer);
        phase = 'open'; // settled
        socket.destroy();
        return reject(new LocalPortUnavailable(err.code));
      }
      fail(`socket: ${err.code ?? err.message}`);
    });
    socket.on('close', () => {
      if (open.delete(socket)) dropped++;
      fail('closed before 200');
    });
  });
}

async function connectAll(request: Extract<ClientRequest, { op: 'connect' }>): Promise<ConnectResult> {
  const list = payloads[request.set];
  const deadline = Date.now() + request.deadlineMs;
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let failed = 0;
  let next = 0;
  let firstStartMs = Number.NaN;
  let lastDoneMs = Number.NaN;
  let nextLocalPort = request.localPorts?.from;
  let portRetries = 0;
  /** The next local port of this client's range, or undefined (kernel's choice) when there is no range. */
  function localPort(): number | undefined {
    if (nextLocalPort === undefined || request.localPorts === undefined) return undefined;
    if (nextLocalPort >= request.localPorts.to) throw new Error('local port range exhausted');
    return nextLocalPort++;
  }

  async function lane(): Promise<void> {
    while (next < list.length) {
      if (Date.now() > deadline) {
        const rest = list.length - next;
        next = list.length;
        failed += rest;
        errors['bench deadline passed'] = (errors['bench deadline passed'] ?? 0) + rest;
        return;
      }
      const payload = list[next++]!;
      const started = now();
      if (Number.isNaN(firstStartMs)) firstStartMs = started;
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            latencies.push(await connectDevice(request.port, payload, request.perDeviceTimeoutMs, localPort(), started, request.localAddress));
            break;
          } catch (err) {
            // A port in use by something else on this machine: take the next one (bounded).
            if (!(err instanceof LocalPortUnavailable) || attempt >= 50) throw err;
            portRetries++;
          }
        }
        lastDoneMs = now();
      } catch (err) {
        failed++;
        const reason = (err as Error).message;
        if (reason in errors || Object.keys(errors).length < 10) errors[reason] = (errors[reason] ?? 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(request.concurrency, list.length)) }, lane));

  latencies.sort((a, b) => a - b);
  const step = Math.max(1, Math.floor(latencies.length / 2_000));
  return {
    ok: latencies.length,
    failed,
    portRetries,
    errors,
    firstStartMs,
    lastDoneMs,
    latencySample: latencies.filter((_, i) => i % step === 0 || i === latencies.length - 1),
  };
}

function reset(): number {
  const closed = open.size;
  for (const socket of open) socket.destroy();
  open.clear();
  dropped = 0;
  return closed;
}

function buildPayloads(keyPem: string, ids: string[], accountId: string): Buffer[] {
  const key = crypto.createPrivateKey(keyPem);
  return ids.map((deviceId) =>
    Buffer.from(JSON.stringify({ type: 'device', deviceId, deviceToken: mintDeviceToken(key, deviceId, { accountId, expiresIn: '12h' }) })),
  );
}

process.on('message', (request: ClientRequest) => {
  void (async () => {
    try {
      switch (request.op) {
        case 'mint': {
          const t0 = Date.now();
          payloads.devices = buildPayloads(request.privateKeyPem, request.ids, request.accountId);
          payloads.warmup = buildPayloads(request.privateKeyPem, request.warmupIds, request.accountId);
          return send({ op: 'minted', ms: Date.now() - t0 });
        }
        case 'connect':
          return send({ op: 'connected', ...(await connectAll(request)) });
        case 'status':
          return send({ op: 'status', open: open.size, dropped });
        case 'reset':
          return send({ op: 'reset', closed: reset() });
        case 'listen':
          listening.ack = request.ack;
          listening.keepLatencies = request.keepLatencies;
          listening.holdAcks = request.holdAcks ?? false;
          receipts = { count: 0, other: 0, firstMs: Number.NaN, lastMs: Number.NaN, latencies: [] };
          ids = [];
          held = [];
          return send({ op: 'listening' });
        case 'received':
          return send({ op: 'received', ...receipts, latencies: request.latencies ? receipts.latencies : [], ids: request.latencies ? ids : [] });
        case 'ackHeld':
          return send({ op: 'ackedHeld', acks: ackHeld() });
      }
    } catch (err) {
      send({ op: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});

exitWithParent();
