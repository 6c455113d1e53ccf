/** The messages primary and workers exchange over IPC: objects tagged with an `iotws:` type. */
export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}
