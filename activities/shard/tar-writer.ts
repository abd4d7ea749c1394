/**
 * Deterministic, streaming WebDataset shard writer (plain ustar, no PAX headers).
 *
 * The published shards were written by webdataset's TarWriter (Python tarfile, PAX format,
 * mtime = write time). We keep its visible metadata (mode 0444, uname/gname "bigdata",
 * members `${key}.${ext}` sorted by extension) but use a fixed mtime and plain ustar headers,
 * so the same samples always give the same bytes (and the same sha256) on any machine.
 * Every wds reader (webdataset, tarfile, GNU tar, node-tar) reads ustar.
 *
 * Crash safety: bytes go to `${finalPath}.partial-<pid>`; close() fsyncs and renames, so a file
 * at finalPath is always complete.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { partialPathOf, removeStalePartials } from '../common/files';

const BLOCK = 512;
/** GNU tar and Python tarfile pad the archive to a whole record of 20 blocks. */
const RECORD = 20 * BLOCK;
const MAX_NAME_BYTES = 100;
/** The ustar size field holds 11 octal digits. */
const MAX_MEMBER_BYTES = 8 ** 11 - 1;
const MAX_MTIME = 8 ** 11 - 1;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Published shards hold at most 10,000 samples (docs/dataset-format.md). */
export const DEFAULT_SHARD_MAX_SAMPLES = 10_000;
/** About 1 GB per shard: the whole archive, end blocks and record padding included. */
export const DEFAULT_SHARD_MAX_BYTES = 1_000_000_000;

export interface TarShardWriterOptions {
  /** Fixed mtime (seconds since the epoch) stamped on every member; default 0 (the epoch). */
  mtime?: number;
  /** Most samples in the shard; default 10,000. */
  maxSamples?: number;
  /** Most bytes of the finished archive file (padding included); default 1,000,000,000. */
  maxBytes?: number;
}

/**
 * A sample that would take the shard past maxSamples or maxBytes. addSample rejects with it without writing
 * anything, so the caller can close the shard and start the next one (the exporter does), or stop (a release
 * unit is one shard, so there it is a planning error: see activities/shard/activity.ts).
 */
export class ShardLimitError extends Error {
  override readonly name = 'ShardLimitError';
  constructor(
    readonly limit: 'samples' | 'bytes',
    readonly max: number,
    /** What the finished shard would have been with this sample: samples, or archive bytes. */
    readonly wouldBe: number,
    readonly key: string,
    readonly shardPath: string,
  ) {
    super(
      limit === 'samples'
        ? `sample ${key} would be sample ${wouldBe} of ${shardPath}, over the limit of ${max} samples per shard`
        : `sample ${key} would make ${shardPath} ${wouldBe} bytes, over the limit of ${max} bytes per shard`,
    );
  }
}

export interface TarMember {
  /** Extension without the dot, e.g. "jpg"; lowercase letters and digits. */
  ext: string;
  data: Buffer;
}

export interface ClosedShard {
  path: string;
  bytes: number;
  sha256: string;
  samples: number;
}

/**
 * A sample key becomes the member-name stem. wds readers split key and extension at the
 * first '.', so a key must not contain one; '/' would create directories. We also refuse
 * whitespace, control and non-ASCII characters, so names are the same bytes everywhere.
 */
export function isValidSampleKey(key: string): boolean {
  return /^[\x21-\x7e]+$/.test(key) && !/[./\\]/.test(key);
}

const EXT_RE = /^[a-z0-9]+$/;

export class TarShardWriter {
  private readonly hash: Hash = createHash('sha256');
  private readonly keys = new Set<string>();
  private bytes = 0;
  private samples = 0;
  /** Samples and bytes accepted by addSample, including those still queued for writing. */
  private acceptedSamples = 0;
  private acceptedBytes = 0;
  private state: 'open' | 'closed' | 'aborted' | 'failed' = 'open';
  /** Serialises writes so un-awaited concurrent addSample calls cannot interleave members. */
  private tail: Promise<void> = Promise.resolve();

  private constructor(
    readonly finalPath: string,
    readonly partialPath: string,
    private readonly fh: FileHandle,
    private readonly mtime: number,
    readonly maxSamples: number,
    readonly maxBytes: number,
  ) {}

  static async create(finalPath: string, opts: TarShardWriterOptions = {}): Promise<TarShardWriter> {
    const mtime = opts.mtime ?? 0;
    if (!Number.isInteger(mtime) || mtime < 0 || mtime > MAX_MTIME) {
      throw new RangeError(`tar mtime must be an integer in [0, ${MAX_MTIME}], got ${mtime}`);
    }
    const maxSamples = opts.maxSamples ?? DEFAULT_SHARD_MAX_SAMPLES;
    const maxBytes = opts.maxBytes ?? DEFAULT_SHARD_MAX_BYTES;
    if (!Number.isInteger(maxSamples) || maxSamples < 1)
      throw new RangeError(`maxSamples must be a positive integer, got ${maxSamples}`);
    if (!Number.isInteger(maxBytes) || maxBytes < RECORD)
      throw new RangeError(`maxBytes must be an integer of at least ${RECORD}, got ${maxBytes}`);
    const partialPath = partialPathOf(finalPath);
    await fsp.mkdir(path.dirname(finalPath), { recursive: true });
    // A shard has one writer: what an earlier attempt left behind (killed before its rename) goes now.
    await removeStalePartials(finalPath);
    const fh = await fsp.open(partialPath, 'wx', 0o644);
    return new TarShardWriter(finalPath, partialPath, fh, mtime, maxSamples, maxBytes);
  }

  get sampleCount(): number {
    return this.samples;
  }

  /** Bytes written so far (without the end-of-archive blocks and record padding). */
  get bytesWritten(): number {
    return this.bytes;
  }

  /**
   * Rejects (without writing anything, so the writer stays usable) on an invalid key or member, and with a
   * ShardLimitError when the sample would take the shard past maxSamples or maxBytes.
   */
  addSample(key: string, members: TarMember[]): Promise<void> {
    let chunks: Buffer[];
    try {
      chunks = this.encodeSample(key, members);
      const size = chunks.reduce((n, c) => n + c.length, 0);
      if (this.acceptedSamples + 1 > this.maxSamples) {
        throw new ShardLimitError('samples', this.maxSamples, this.acceptedSamples + 1, key, this.finalPath);
      }
      const archive = tarArchiveBytes(this.acceptedBytes + size);
      if (archive > this.maxBytes) throw new ShardLimitError('bytes', this.maxBytes, archive, key, this.finalPath);
      this.acceptedSamples++;
      this.acceptedBytes += size;
    } catch (err) {
      return Promise.reject(err);
    }
    this.keys.add(key);
    const run = this.tail.then(async () => {
      this.assertOpen();
      await this.write(chunks);
      this.samples++;
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Validates a sample and lays out its header and data blocks, members sorted by extension. */
  private encodeSample(key: string, members: TarMember[]): Buffer[] {
    this.assertOpen();
    if (!isValidSampleKey(key)) {
      throw new Error(
        `invalid sample key ${JSON.stringify(key)}: must be printable ASCII without '.', '/', '\\' or spaces`,
      );
    }
    if (this.keys.has(key)) throw new Error(`duplicate sample key in shard: ${key}`);
    if (members.length === 0) throw new Error(`sample ${key} has no members`);
    const sorted = [...members].sort((a, b) => (a.ext < b.ext ? -1 : a.ext > b.ext ? 1 : 0));
    const chunks: Buffer[] = [];
    for (let i = 0; i < sorted.length; i++) {
      const { ext, data } = sorted[i];
      if (!EXT_RE.test(ext)) throw new Error(`invalid member extension ${JSON.stringify(ext)} for sample ${key}`);
      if (i > 0 && sorted[i - 1].ext === ext) throw new Error(`duplicate member .${ext} in sample ${key}`);
      if (!Buffer.isBuffer(data)) throw new TypeError(`member ${key}.${ext} data must be a Buffer`);
      const name = `${key}.${ext}`;
      if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
        throw new Error(`tar member name too long (${Buffer.byteLength(name)} > ${MAX_NAME_BYTES} bytes): ${name}`);
      }
      if (data.length > MAX_MEMBER_BYTES) throw new Error(`tar member ${name} too large: ${data.length} bytes`);
      chunks.push(this.header(name, data.length), data);
      const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
      if (pad > 0) chunks.push(ZERO_BLOCK.subarray(0, pad));
    }
    return chunks;
  }

  async close(): Promise<ClosedShard> {
    this.assertOpen();
    await this.tail;
    this.assertOpen();
    try {
      // Two zero blocks end the archive; then pad to a whole record like GNU tar / tarfile.
      const end = this.bytes + 2 * BLOCK;
      const total = Math.ceil(end / RECORD) * RECORD;
      await this.write([Buffer.alloc(total - this.bytes)]);
      await this.fh.sync();
      await this.fh.close();
      this.state = 'closed';
      await fsp.rename(this.partialPath, this.finalPath);
      await fsyncDir(path.dirname(this.finalPath));
    } catch (err) {
      if (this.state !== 'closed') await this.abort();
      else await fsp.rm(this.partialPath, { force: true });
      throw err;
    }
    return { path: this.finalPath, bytes: this.bytes, sha256: this.hash.digest('hex'), samples: this.samples };
  }

  /** Drops the partial file. Safe to call more than once and after a failed write. */
  async abort(): Promise<void> {
    if (this.state === 'closed' || this.state === 'aborted') return;
    this.state = 'aborted';
    await this.tail;
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.partialPath, { force: true });
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new Error(`tar shard writer for ${this.finalPath} is ${this.state}`);
  }

  private async write(chunks: Buffer[]): Promise<void> {
    try {
      let pending = chunks.filter((c) => c.length > 0);
      while (pending.length > 0) {
        const { bytesWritten } = await this.fh.writev(pending);
        if (bytesWritten <= 0) throw new Error(`write to ${this.partialPath} made no progress`);
        // Hash exactly what reached the file; a short write (rare on regular files) retries the rest.
        let left = bytesWritten;
        const rest: Buffer[] = [];
        for (const c of pending) {
          if (left >= c.length) {
            this.hash.update(c);
            left -= c.length;
          } else {
            if (left > 0) this.hash.update(c.subarray(0, left));
            rest.push(c.subarray(left));
            left = 0;
          }
        }
        this.bytes += bytesWritten;
        pending = rest;
      }
    } catch (err) {
      // The file is now in an unknown state; only abort() is allowed from here.
      this.state = 'failed';
      throw err;
    }
  }

  /** One ustar header block, laid out exactly as Python tarfile's USTAR_FORMAT writes it. */
  private header(name: string, size: number): Buffer {
    const h = Buffer.alloc(BLOCK);
    h.write(name, 0, 'utf8');
    octal(h, 100, 8, 0o444); // mode
    octal(h, 108, 8, 0); // uid
    octal(h, 116, 8, 0); // gid
    octal(h, 124, 12, size);
    octal(h, 136, 12, this.mtime);
    h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
    h.write('0', 156, 'ascii'); // typeflag: regular file
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    h.write('bigdata', 265, 'ascii'); // uname, as webdataset's TarWriter sets it
    h.write('bigdata', 297, 'ascii'); // gname
    // devmajor/devminor stay NUL for regular files, as Python 3 tarfile leaves them.
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += h[i];
    // tarfile: six octal digits, NUL, then the remaining space.
    h.write(sum.toString(8).padStart(6, '0') + '\0', 148, 'ascii');
    return h;
  }
}

/** Bytes one sample takes in a shard: a header block per member plus its data padded to whole blocks. */
export function tarSampleBytes(memberSizes: readonly number[]): number {
  return memberSizes.reduce((n, size) => n + BLOCK + Math.ceil(size / BLOCK) * BLOCK, 0);
}

/** Size of the finished archive file whose members take `memberBytes`: two end blocks, padded to a 10,240-byte record. */
export function tarArchiveBytes(memberBytes: number): number {
  return Math.ceil((memberBytes + 2 * BLOCK) / RECORD) * RECORD;
}

/** Zero-padded octal with a trailing NUL, filling the whole field. */
function octal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, 'ascii');
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable; some filesystems refuse fsync on directories, which is harmless.
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    /* best effort */
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
