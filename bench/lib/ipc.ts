/** Request/reply over a forked child's IPC channel, bounded in time. */
import type { ChildProcess } from 'node:child_process';
import type { ClientReply, ClientRequest } from '../device-client.js';

/**
 * Sends `message` and resolves with the first reply whose `op` is `expected`; rejects on
 * an `{op:'error'}` reply, the child's exit or the timeout. Typed for the device client
 * by default; other children pass their own request and reply types.
 */
export function request<Op extends Reply['op'], Reply extends { op: string } = ClientReply, Request extends object = ClientRequest>(
  child: ChildProcess,
  message: Request,
  expected: Op,
  timeoutMs: number,
): Promise<Extract<Reply, { op: Op }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`child ${child.pid}: no "${expected}" reply within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (reply: Reply) => {
      if (reply.op === 'error') finish(new Error(`child ${child.pid}: ${(reply as { message?: string }).message}`));
      else if (reply.op === expected) finish(undefined, reply as Extract<Reply, { op: Op }>);
    };
    const onExit = (code: number | null, signal: string | null) => finish(new Error(`child ${child.pid} exited (${code ?? signal})`));
    function finish(err: Error | undefined, reply?: Extract<Reply, { op: Op }>): void {
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

/** For a forked bench child: never outlive the bench (IPC gone, or re-parented: the parent died). */
export function exitWithParent(): void {
  process.on('disconnect', () => process.exit(0));
  const parentPid = process.ppid;
  setInterval(() => {
    if (process.ppid !== parentPid) process.exit(0);
  }, 1_000).unref();
}
