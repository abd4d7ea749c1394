import { StringDecoder } from 'node:string_decoder';

/**
 * Lines of a byte stream (LF or CRLF), decoded as UTF-8 across chunk boundaries. Unlike readline, an error of
 * the stream (a truncated gzip, a reset, an md5 mismatch at the end) is thrown to the consumer, never swallowed,
 * and a final line without a newline is still yielded only when the stream ended cleanly.
 */
export async function* readLines(
  stream: AsyncIterable<Buffer | string>,
  maxLineBytes = 16 * 1024 * 1024,
): AsyncGenerator<string> {
  for await (const batch of readLineBatches(stream, maxLineBytes)) yield* batch;
}

/** As readLines, a chunk's worth of lines at a time (no promise per line: what the 8-million-row readers use). */
export async function* readLineBatches(
  stream: AsyncIterable<Buffer | string>,
  maxLineBytes = 16 * 1024 * 1024,
): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of stream) {
    const text = rest + (typeof chunk === 'string' ? chunk : decoder.write(chunk));
    const batch: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      batch.push(text.slice(start, end));
      start = nl + 1;
    }
    rest = text.slice(start);
    if (rest.length > maxLineBytes)
      throw new Error(`a line longer than ${maxLineBytes} characters: not a line-oriented file`);
    if (batch.length > 0) yield batch;
  }
  rest += decoder.end();
  if (rest.endsWith('\r')) rest = rest.slice(0, -1);
  if (rest.length > 0) yield [rest];
}

/**
 * Splits one CSV line. The S3 inventory quotes every cell and never doubles a quote in a key, so the common case
 * is a split on `","`; anything else goes through the full parser.
 */
export function splitCsvLine(line: string, parseFull: (line: string) => string[]): string[] {
  if (
    line.length > 1 &&
    line.charCodeAt(0) === 34 &&
    line.charCodeAt(line.length - 1) === 34 &&
    line.indexOf('""') < 0
  ) {
    const cells = line.slice(1, -1).split('","');
    // A quote left inside a cell means the fast split was wrong (e.g. `"a",b`): fall back.
    let clean = true;
    for (let i = 0; i < cells.length && clean; i++) if (cells[i]!.indexOf('"') >= 0) clean = false;
    if (clean) return cells;
  }
  return parseFull(line);
}
