/**
 * A small streaming reader for the tar shards: walks the headers with positional reads and reads a member's
 * bytes only when asked, so selecting a few samples from a 1 GB shard reads little more than its headers.
 *
 * Reads what TarShardWriter writes (ustar) and what Python's tarfile / webdataset's TarWriter write
 * (ustar and PAX, including PAX `path` and `size` records, GNU long names). Header checksums are verified.
 */
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

const BLOCK = 512;

export interface TarEntry {
  /** Member name (PAX / GNU long names applied). */
  name: string;
  size: number;
  mode: number;
  mtime: number;
  uname: string;
  gname: string;
  /** Offset of the member's data in the file. */
  offset: number;
  /** Reads the member's bytes (valid until the iteration moves on). */
  read(): Promise<Buffer>;
}

export class TarFormatError extends Error {
  override readonly name = 'TarFormatError';
}

function cstr(buf: Buffer, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? len : end).toString('utf8');
}

function num(buf: Buffer, start: number, len: number, what: string, file: string): number {
  const field = buf.subarray(start, start + len);
  if (field[0]! & 0x80) {
    // GNU base-256 for values that do not fit the octal field.
    let v = 0;
    for (let i = 1; i < len; i++) v = v * 256 + field[i]!;
    return v;
  }
  const text = cstr(buf, start, len).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`${file}: bad ${what} field ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = parseInt(cstr(h, 148, 8).trim(), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return stored === sum;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(data.subarray(pos, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0) break;
    const record = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

/** Every regular-file member of a tar file, in archive order. */
export async function* readTarEntries(file: string): AsyncGenerator<TarEntry> {
  const fh: FileHandle = await fsp.open(file, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const readAt = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
        if (bytesRead === 0) throw new TarFormatError(`${file}: unexpected end of file at byte ${pos + got}`);
        got += bytesRead;
      }
      return buf;
    };
    let pos = 0;
    let pax: Record<string, string> = {};
    let longName: string | null = null;
    while (pos + BLOCK <= fileSize) {
      const h = await readAt(pos, BLOCK);
      if (h.every((b) => b === 0)) return; // end of archive
      if (!checksumOk(h)) throw new TarFormatError(`${file}: bad header checksum at byte ${pos}`);
      const type = String.fromCharCode(h[156]!) || '0';
      let size = num(h, 124, 12, 'size', file);
      const dataAt = pos + BLOCK;
      if (type === 'x' || type === 'g' || type === 'L') {
        const data = await readAt(dataAt, size);
        if (type === 'x') pax = parsePax(data);
        else if (type === 'L') longName = cstr(data, 0, data.length);
        pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
        continue;
      }
      if (pax.size !== undefined) size = Number(pax.size);
      const prefix = cstr(h, 345, 155);
      const baseName = cstr(h, 0, 100);
      const name = pax.path ?? longName ?? (prefix ? `${prefix}/${baseName}` : baseName);
      const entry: TarEntry = {
        name,
        size,
        mode: num(h, 100, 8, 'mode', file),
        mtime: pax.mtime !== undefined ? Math.floor(Number(pax.mtime)) : num(h, 136, 12, 'mtime', file),
        uname: pax.uname ?? cstr(h, 265, 32),
        gname: pax.gname ?? cstr(h, 297, 32),
        offset: dataAt,
        read: () => readAt(dataAt, size),
      };
      pax = {};
      longName = null;
      pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
      if (type === '0' || type === '\0' || type === '7') yield entry;
    }
  } finally {
    await fh.close();
  }
}

/** Splits a member name into sample key and extension at the first '.' of its base name, as webdataset does. */
export function splitMemberName(name: string): { key: string; ext: string } | null {
  const m = /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name);
  return m ? { key: m[1]!, ext: m[2]! } : null;
}
