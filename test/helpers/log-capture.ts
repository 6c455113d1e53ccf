import { Writable } from 'node:stream';

/** A pino destination that keeps every line: pass `sink` as the logger's destination, read `lines`. */
export function captureLog(): { sink: Writable; lines: string[]; text(): string; json(): Record<string, unknown>[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      callback();
    },
  });
  return { sink, lines, text: () => lines.join('\n'), json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
