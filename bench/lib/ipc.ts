/** Request/reply over a forked client's IPC channel, bounded in time. */
import type { ChildProcess } from 'node:child_process';
import type { ClientReply, ClientRequest } from '../device-client.js';

export function request<Op extends ClientReply['op']>(
  child: ChildProcess,
  message: ClientRequest,
  expected: Op,
  timeoutMs: number,
): Promise<Extract<ClientReply, { op: Op }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`device client ${child.pid}: no "${expected}" reply within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (reply: ClientReply) => {
      if (reply.op === 'error') finish(new Error(`device client ${child.pid}: ${reply.message}`));
      else if (reply.op === expected) finish(undefined, reply as Extract<ClientReply, { op: Op }>);
    };
    const onExit = (code: number | null, signal: string | null) => finish(new Error(`device client ${child.pid} exited (${code ?? signal})`));
    function finish(err: Error | undefined, reply?: Extract<ClientReply, { op: Op }>): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(reply!);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(message);
  });
}
