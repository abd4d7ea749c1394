import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';

/**
 * The two content ids the Hub's tree reports: an LFS file's `lfs.oid` is the sha256 of its bytes; a regular (small,
 * git-stored) file's `oid` is its git blob id, sha1("blob <size>\0" + bytes).
 */
export interface ContentIds {
  bytes: number;
  sha256: string;
  gitBlobSha1: string;
}

export function gitBlobSha1Of(data: Buffer | string): string {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex');
}

/** Both ids in one streaming pass (a shard can be gigabytes); `onProgress` gets the bytes read so far. */
export async function contentIdsOfFile(file: string, onProgress?: (bytesRead: number) => void): Promise<ContentIds> {
  const { size } = await fs.stat(file);
  const sha256 = createHash('sha256');
  const sha1 = createHash('sha1').update(`blob ${size}\0`);
  let read = 0;
  let lastReport = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    const b = chunk as Buffer;
    sha256.update(b);
    sha1.update(b);
    read += b.length;
    if (onProgress && read - lastReport >= 64 << 20) {
      lastReport = read;
      onProgress(read);
    }
  }
  if (read !== size) throw new Error(`${file} changed size while being hashed (${size} -> ${read} bytes)`);
  return { bytes: size, sha256: sha256.digest('hex'), gitBlobSha1: sha1.digest('hex') };
}
