import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { SourceError } from '../fetch/source';

/**
 * Stream-extracts the members a release needs from one legacy package (`PMC<id>.tar.gz`: a folder with the
 * `.nxml`, the PDF, figures as .jpg and .gif, supplements): only the nXML and the images, written to a staging
 * folder, hashed as they pass. Nothing else is buffered or written.
 *
 * Refused, with a recorded reason, whatever the member's name: absolute paths, `..` components, hard and symbolic
 * links, devices and FIFOs, other special entries; among the wanted members, those past `maxEntryBytes`.
 *
 * Packages carry no md5: the gzip CRC-32 and length (checked by zlib at the end of the stream), tar's header
 * checksums and a whole last member (tar in strict mode) stand for it. Any of those failing, or the
 * decompressed size passing `maxPackageBytes`, throws, and the caller keeps nothing of the package.
 */
export interface PackageLimits {
  maxEntryBytes: number;
  maxPackageBytes: number;
}

export type RejectReason =
  | 'absolute-path'
  | 'parent-escape'
  | 'link'
  | 'device'
  | 'special-entry'
  | 'too-large'
  | 'duplicate-name'
  | 'extra-nxml';

export interface RejectedEntry {
  path: string;
  reason: RejectReason;
  detail: string;
}

export interface ExtractedMember {
  /** The member's file name (its folder dropped): the media key is `<PMCID>.<version>/<name>`. */
  name: string;
  kind: 'xml' | 'image';
  /** Where it was staged; the caller moves it into place. */
  staged: string;
  md5: string;
  bytes: number;
}

export interface ExtractResult {
  xml: ExtractedMember | null;
  images: ExtractedMember[];
  rejected: RejectedEntry[];
  entries: number;
  compressedBytes: number;
  decompressedBytes: number;
}

export const IMAGE_MEMBER = /\.(jpe?g|png|gif|tiff?)$/i;
const XML_MEMBER = /\.nxml$/i;

/** Why a member may not be used, from its header alone; null when it is a regular file or a folder with a safe path. */
export function unsafeEntry(entry: { path: string; type: string; linkpath?: string | null }): RejectedEntry | null {
  const p = entry.path;
  if (p.startsWith('/') || p.startsWith('\\') || /^[A-Za-z]:/.test(p))
    return { path: p, reason: 'absolute-path', detail: `absolute member path ${JSON.stringify(p)}` };
  if (p.split(/[\\/]/).includes('..'))
    return { path: p, reason: 'parent-escape', detail: `member path ${JSON.stringify(p)} climbs out with ..` };
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
    case 'Directory':
      return null;
    case 'SymbolicLink':
    case 'Link':
      return {
        path: p,
        reason: 'link',
        detail: `${entry.type === 'Link' ? 'hard' : 'symbolic'} link ${JSON.stringify(p)} -> ${JSON.stringify(entry.linkpath ?? '')}`,
      };
    case 'CharacterDevice':
    case 'BlockDevice':
    case 'FIFO':
      return { path: p, reason: 'device', detail: `${entry.type} ${JSON.stringify(p)}` };
    default:
      return { path: p, reason: 'special-entry', detail: `${entry.type} entry ${JSON.stringify(p)}` };
  }
}

function corrupt(pkg: string, why: string): SourceError {
  return new SourceError(`package ${pkg} is damaged: ${why}`, 'checksum', true, pkg);
}

/**
 * Extracts from `input` (the .tar.gz bytes) into `stageDir`. Resolves only after the whole package was read and
 * verified and every staged file is flushed; rejects otherwise (a SourceError: 'checksum' for a damaged package,
 * 'too-large' past maxPackageBytes, or the transport's own error).
 */
export async function extractPackage(
  input: Readable,
  pkg: string,
  stageDir: string,
  limits: PackageLimits,
): Promise<ExtractResult> {
  // Wired before the first await, so an input that fails at once (a reset) reaches gunzip and the loop below.
  const gunzip = createGunzip();
  gunzip.on('error', () => undefined); // kept on the stream (`errored`); the loop below throws it
  let compressedBytes = 0;
  input.on('data', (c: Buffer) => (compressedBytes += c.length));
  input.on('error', (err) => gunzip.destroy(err));
  if (input.errored) gunzip.destroy(input.errored);
  input.pipe(gunzip);
  try {
    await fs.mkdir(stageDir, { recursive: true });
  } catch (err) {
    // Nothing will read the transfer: end it, so its connection goes back to the pool.
    input.destroy();
    throw err;
  }
  const result: ExtractResult = {
    xml: null,
    images: [],
    rejected: [],
    entries: 0,
    compressedBytes: 0,
    decompressedBytes: 0,
  };
  const names = new Set<string>();
  const writes: Promise<void>[] = [];
  let failure: Error | null = null;
  const fail = (err: Error) => {
    failure ??= err;
  };

  const parser = new Parser({ strict: true, maxMetaEntrySize: 1024 * 1024 });
  parser.on('error', (err: Error) => fail(corrupt(pkg, `tar: ${err.message}`)));
  parser.on('entry', (entry: ReadEntry) => {
    result.entries++;
    const unsafe = unsafeEntry({ path: entry.path, type: entry.type, linkpath: entry.linkpath });
    if (unsafe) {
      result.rejected.push(unsafe);
      entry.resume();
      return;
    }
    const name = path.posix.basename(entry.path.replace(/\\/g, '/'));
    const kind =
      entry.type === 'Directory' ? null : XML_MEMBER.test(name) ? 'xml' : IMAGE_MEMBER.test(name) ? 'image' : null;
    if (!kind) {
      entry.resume(); // PDFs, supplements, folders: not needed, never written
      return;
    }
    const size = entry.size ?? 0;
    if (size > limits.maxEntryBytes) {
      result.rejected.push({
        path: entry.path,
        reason: 'too-large',
        detail: `${entry.path}: ${size} bytes, over the limit of ${limits.maxEntryBytes}`,
      });
      entry.resume();
      return;
    }
    if (kind === 'xml' && result.xml) {
      result.rejected.push({
        path: entry.path,
        reason: 'extra-nxml',
        detail: `${entry.path}: a second .nxml (kept ${result.xml.name})`,
      });
      entry.resume();
      return;
    }
    if (names.has(name) || name === '' || name === '.' || name === '..') {
      result.rejected.push({
        path: entry.path,
        reason: 'duplicate-name',
        detail: `${entry.path}: another member is already named ${JSON.stringify(name)}`,
      });
      entry.resume();
      return;
    }
    names.add(name);
    const staged = path.join(stageDir, `${String(result.entries).padStart(5, '0')}.part`);
    const member: ExtractedMember = { name, kind, staged, md5: '', bytes: 0 };
    if (kind === 'xml') result.xml = member;
    else result.images.push(member);
    const hash = createHash('md5');
    const out = createWriteStream(staged);
    writes.push(
      new Promise<void>((resolve) => {
        out.on('error', (err) => {
          fail(err);
          entry.resume();
          resolve();
        });
        out.on('close', () => resolve());
      }),
    );
    // One consumer for every chunk: hashed, counted and written in the same order (with backpressure).
    entry.on('data', (chunk: Buffer) => {
      member.bytes += chunk.length;
      hash.update(chunk);
      if (member.bytes > limits.maxEntryBytes) fail(corrupt(pkg, `${entry.path} is longer than its header says`));
      if (!out.write(chunk)) {
        entry.pause();
        out.once('drain', () => entry.resume());
      }
    });
    entry.on('end', () => {
      member.md5 = hash.digest('hex');
      out.end();
    });
  });

  // The last 1024 decompressed bytes: a whole archive ends with two zero blocks (tar's parser does not notice an
  // archive cut at a header boundary, so this is checked here).
  let tail: Buffer = Buffer.alloc(0);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      result.decompressedBytes += chunk.length;
      tail = chunk.length >= 1024 ? chunk.subarray(chunk.length - 1024) : Buffer.concat([tail, chunk]).subarray(-1024);
      if (result.decompressedBytes > limits.maxPackageBytes) {
        throw new SourceError(
          `package ${pkg} decompresses past ${limits.maxPackageBytes} bytes`,
          'too-large',
          false,
          pkg,
        );
      }
      if (failure) break;
      // Backpressure from tar, but never a wait that outlives the input: a transfer that breaks meanwhile
      // closes gunzip, and the next turn of the loop throws its error.
      if (!parser.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            parser.off('drain', done);
            gunzip.off('close', done);
            resolve();
          };
          parser.once('drain', done);
          gunzip.once('close', done);
        });
      }
    }
  } catch (err) {
    input.destroy();
    if (err instanceof SourceError) throw err;
    // zlib: "unexpected end of file" (truncated), "incorrect header check", "invalid distance too far back", a CRC error
    throw corrupt(pkg, `gzip: ${(err as Error).message}`);
  }
  if (!failure) {
    await new Promise<void>((resolve) => {
      parser.once('end', () => resolve());
      parser.once('error', () => resolve());
      parser.end();
    });
  }
  await Promise.all(writes);
  result.compressedBytes = compressedBytes;
  if (failure) throw failure;
  if (result.entries === 0) throw corrupt(pkg, 'no tar members');
  if (result.decompressedBytes % 512 !== 0 || tail.length < 1024 || tail.some((b) => b !== 0)) {
    throw corrupt(pkg, `tar: no end-of-archive blocks after ${result.decompressedBytes} bytes (cut short)`);
  }
  return result;
}
