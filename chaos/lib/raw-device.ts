/**
 * A device on a bare `ws` client, for scenarios that need a device to misbehave:
 * stop reading (pause its socket), send what the simulator never would, or claim an
 * id the database cannot store. It records every server message code and its close.
 */
import WebSocket from 'ws';

export interface RawDevice {
  ws: WebSocket;
  /** Codes of the JSON messages the server sent, in order. */
  codes: number[];
  /** Actuations received (id, seq). */
  actuations: { id: string; seq: number }[];
  closed: Promise<{ code: number; reason: string }>;
  /** The close code once closed. */
  closeCode: number | undefined;
  /** Resolves with the server's first answer code to the device message (200 when authenticated). */
  answer: Promise<number>;
  send(message: unknown): void;
}

export function connectRawDevice(url: string, deviceId: string, token: string, onActuation?: (device: RawDevice, message: { id: string; seq: number }) => void): RawDevice {
  const ws = new WebSocket(url, 'echo-protocol');
  const codes: number[] = [];
  const actuations: { id: string; seq: number }[] = [];
  let answered: (code: number) => void = () => undefined;
  const device: RawDevice = {
    ws,
    codes,
    actuations,
    closed: new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
    closeCode: undefined,
    answer: new Promise((resolve) => (answered = resolve)),
    send: (message) => ws.readyState === WebSocket.OPEN && ws.send(typeof message === 'string' ? message : JSON.stringify(message)),
  };
  ws.on('error', () => undefined);
  ws.on('open', () => ws.send(JSON.stringify({ type: 'device', deviceId, deviceToken: token })));
  ws.on('close', (code) => {
    device.closeCode = code;
    answered(-1);
  });
  ws.on('message', (data) => {
    let message: { code?: number; id?: string; seq?: number };
    try {
      message = JSON.parse(data.toString()) as typeof message;
    } catch {
      return;
    }
    if (typeof message.code === 'number') codes.push(message.code);
    if (codes.length === 1) answered(message.code ?? -1);
    if (message.code === 1024 && typeof message.id === 'string') {
      actuations.push({ id: message.id, seq: message.seq ?? -1 });
      onActuation?.(device, { id: message.id, seq: message.seq ?? -1 });
    }
  });
  return device;
}
