import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SaxesParser } from 'saxes';
import type { SourceConfig } from '../../config/release';

/** One object read from the bucket, verified complete before it is returned. */
export interface SourceObject {
  key: string;
  body: Buffer;
  etag: string | null;
}

export interface ListedPrefixes {
  prefixes: string[];
  keys: string[];
}

export interface GetOptions {
  expectedMd5?: string | null;
  /** Cancellation (the activity's); a timeout applies on top of it. */
  signal?: AbortSignal;
}

/** The PMC cloud bucket, over S3's HTTP API or from a directory holding the same layout. */
export interface PmcSource {
  readonly description: string;
  get(key: string, opts?: GetOptions): Promise<SourceObject>;
  list(prefix: string, delimiter?: string): Promise<ListedPrefixes>;
  /**
   * The object as a stream, for objects too large to hold (inventory data files, big images). The stream ends
   * with an error (a SourceError) instead of its last chunk when the bytes are short or the md5 differs, so a
   * consumer that sees `end` has seen the whole, verified object.
   */
  getStream?(key: string, opts?: GetOptions): Promise<Readable>;
}

/** Why a read failed, and whether trying again can help. */
export class SourceError extends Error {
  constructor(
    message: string,
    readonly kind:
      'not-found' | 'forbidden' | 'checksum' | 'server' | 'network' | 'unsafe-key' | 'bad-md5' | 'too-large',
    readonly retryable: boolean,
    readonly key: string,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

export function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** `s3://pmc-oa-opendata/PMC1.1/PMC1.1.xml?md5=abc` -> { key: 'PMC1.1/PMC1.1.xml', md5: 'abc' } */
export function parseObjectUrl(url: string): { key: string; md5: string | null } {
  const m = /^(?:s3:\/\/[^/]+\/|https?:\/\/[^/]+\/)([^?]+)(?:\?(.*))?$/.exec(url);
  if (!m) throw new Error(`not an object URL of the PMC bucket: ${url}`);
  const raw = m[1]!;
  const key = raw.includes('%') ? decodeURIComponent(raw) : raw;
  const query = m[2];
  if (query === undefined || query === '') return { key, md5: null };
  // PMC's URLs carry exactly `?md5=<hex>`: read that without building URLSearchParams (millions of URLs per plan).
  const simple = /^md5=([0-9A-Fa-f]+)$/.exec(query);
  return { key, md5: simple ? simple[1]! : new URLSearchParams(query).get('md5') };
}

function assertSafeKey(key: string): void {
  // Keys become file paths in the mirror and in the download cache: refuse anything that could escape.
  if (
    key.startsWith('/') ||
    key.split('/').some((p) => p === '..' || p === '.') ||
    key.includes('\\') ||
    key.includes('\0')
  ) {
    throw new SourceError(`unsafe object key ${JSON.stringify(key)}`, 'unsafe-key', false, key);
  }
}

/**
 * Counts and hashes the bytes that pass; at the end, fails the stream (instead of ending it) when fewer bytes
 * came than declared or the md5 differs from the expected one.
 */
export class VerifyingStream extends Transform {
  private readonly hash = createHash('md5');
  bytes = 0;
  constructor(
    private readonly key: string,
    private readonly expectedMd5: string | null | undefined,
    private readonly declaredLength: number | null,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.declaredLength !== null && this.declaredLength !== this.bytes) {
      cb(
        new SourceError(
          `GET ${this.key}: got ${this.bytes} of ${this.declaredLength} bytes`,
          'network',
          true,
          this.key,
        ),
      );
      return;
    }
    const got = this.hash.digest('hex');
    if (this.expectedMd5 && got !== this.expectedMd5.toLowerCase()) {
      cb(
        new SourceError(
          `md5 mismatch for ${this.key}: expected ${this.expectedMd5}, got ${got} (${this.bytes} bytes)`,
          'checksum',
          true,
          this.key,
        ),
      );
      return;
    }
    cb();
  }
}

/** The error a stream of `key` failed with, as a SourceError (a reset or abort mid-body is a retryable 'network' error). */
export function asSourceError(err: unknown, key: string, what = 'GET'): SourceError | Error {
  if (err instanceof SourceError) return err;
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'AbortError' && !/timeout/i.test(String(e.message))) return e; // cancellation: not the object's fault
  const cause = e?.cause?.code ?? e?.cause?.message;
  const timedOut = e?.name === 'TimeoutError' || /timeout|timed out/i.test(String(e?.message));
  return new SourceError(
    `${what} ${key} ${timedOut ? 'timed out' : 'failed'}: ${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`,
    'network',
    true,
    key,
  );
}

function verify(key: string, body: Buffer, expectedMd5: string | null | undefined): void {
  if (expectedMd5 && md5Hex(body) !== expectedMd5.toLowerCase()) {
    throw new SourceError(
      `md5 mismatch for ${key}: expected ${expectedMd5}, got ${md5Hex(body)} (${body.length} bytes)`,
      'checksum',
      true,
      key,
    );
  }
}

export class HttpPmcSource implements PmcSource {
  readonly description: string;
  /**
   * `timeoutMs` bounds a whole `get` and every silence in a stream; `deadlineMs` (10 x timeoutMs unless given)
   * bounds a whole stream, so a body that trickles just fast enough to stay alive still ends.
   */
  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs = 60_000,
    private readonly deadlineMs = timeoutMs * 10,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.description = `PMC cloud bucket at ${this.baseUrl}`;
  }

  private url(key: string): string {
    return `${this.baseUrl}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** The caller's cancellation plus this source's timeout: a stalled or trickling body fails as a retryable timeout. */
  private signalFor(opts: GetOptions): AbortSignal {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    return opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  }

  private async request(key: string, opts: GetOptions, signal: AbortSignal = this.signalFor(opts)): Promise<Response> {
    assertSafeKey(key);
    let res: Response;
    try {
      res = await fetch(this.url(key), { signal });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw asSourceError(err, key);
    }
    if (res.status === 404) throw new SourceError(`GET ${key}: 404 NoSuchKey`, 'not-found', false, key);
    if (res.status === 403) throw new SourceError(`GET ${key}: 403 AccessDenied`, 'forbidden', false, key);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new SourceError(`GET ${key}: HTTP ${res.status}`, 'server', true, key);
    }
    return res;
  }

  async get(key: string, opts: GetOptions = {}): Promise<SourceObject> {
    const res = await this.request(key, opts);
    let body: Buffer;
    try {
      body = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const e = err as Error;
      const timedOut = e?.name === 'TimeoutError' || /timeout|timed out/i.test(String(e?.message));
      throw new SourceError(
        `GET ${key}: body ${timedOut ? 'timed out' : 'interrupted'}: ${e?.message ?? String(err)}`,
        'network',
        true,
        key,
      );
    }
    const declared = res.headers.get('content-length');
    if (declared !== null && Number(declared) !== body.length) {
      throw new SourceError(`GET ${key}: got ${body.length} of ${declared} bytes`, 'network', true, key);
    }
    verify(key, body, opts.expectedMd5);
    return { key, body, etag: res.headers.get('etag')?.replace(/"/g, '') ?? null };
  }

  /** Streams the body; the timeout here is an idle one (no byte for timeoutMs), so a long healthy transfer is never cut. */
  async getStream(key: string, opts: GetOptions = {}): Promise<Readable> {
    const idle = new AbortController();
    let timer = setTimeout(
      () => idle.abort(new DOMException(`no data for ${this.timeoutMs} ms`, 'TimeoutError')),
      this.timeoutMs,
    );
    const rearm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => idle.abort(new DOMException(`no data for ${this.timeoutMs} ms`, 'TimeoutError')),
        this.timeoutMs,
      );
    };
    const deadline = AbortSignal.timeout(this.deadlineMs);
    const signal = AbortSignal.any([...(opts.signal ? [opts.signal] : []), idle.signal, deadline]);
    let res: Response;
    try {
      res = await this.request(key, opts, signal);
    } catch (err) {
      clearTimeout(timer);
      throw err;
    }
    const declared = res.headers.get('content-length');
    const verifier = new VerifyingStream(key, opts.expectedMd5, declared === null ? null : Number(declared));
    const body = res.body ? Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>) : Readable.from([]);
    body.on('data', rearm);
    body.on('error', (err) => {
      clearTimeout(timer);
      const reason = idle.signal.aborted
        ? idle.signal.reason
        : deadline.aborted
          ? new DOMException(`not done within ${this.deadlineMs} ms`, 'TimeoutError')
          : err;
      verifier.destroy(opts.signal?.aborted ? (err as Error) : asSourceError(reason, key));
    });
    body.on('end', () => clearTimeout(timer));
    verifier.on('close', () => {
      clearTimeout(timer);
      if (!body.readableEnded) body.destroy();
    });
    // A reset can come before the caller attaches its handlers: the error stays on the stream (`errored`, and
    // any later read or iteration throws it) instead of crashing the process as an unhandled 'error' event.
    verifier.on('error', () => undefined);
    return body.pipe(verifier);
  }

  async list(prefix: string, delimiter?: string): Promise<ListedPrefixes> {
    const out: ListedPrefixes = { prefixes: [], keys: [] };
    let token: string | null = null;
    do {
      const q = new URLSearchParams({ 'list-type': '2', prefix });
      if (delimiter) q.set('delimiter', delimiter);
      if (token) q.set('continuation-token', token);
      const res = await fetch(`${this.baseUrl}/?${q}`, { signal: AbortSignal.timeout(this.timeoutMs) });
      if (!res.ok)
        throw new SourceError(
          `LIST ${prefix}: HTTP ${res.status}`,
          res.status >= 500 ? 'server' : 'forbidden',
          res.status >= 500,
          prefix,
        );
      const page = parseListObjectsV2(await res.text(), prefix);
      out.prefixes.push(...page.prefixes);
      out.keys.push(...page.keys);
      token = page.truncated ? page.nextToken : null;
    } while (token);
    return out;
  }
}

/** One page of an S3 ListObjectsV2 answer, read with an XML parser (entities, CDATA, any child order). */
export interface ListPage {
  keys: string[];
  prefixes: string[];
  truncated: boolean;
  nextToken: string | null;
}

export function parseListObjectsV2(xml: string, prefix: string): ListPage {
  const page: ListPage = { keys: [], prefixes: [], truncated: false, nextToken: null };
  const parser = new SaxesParser({ xmlns: false });
  const stack: string[] = [];
  let text = '';
  let root: string | null = null;
  parser.on('opentag', (t) => {
    root ??= t.name;
    stack.push(t.name);
    text = '';
  });
  parser.on('text', (t) => (text += t));
  parser.on('cdata', (t) => (text += t));
  parser.on('closetag', (t) => {
    const parent = stack[stack.length - 2];
    if (t.name === 'Key' && parent === 'Contents') page.keys.push(text);
    else if (t.name === 'Prefix' && parent === 'CommonPrefixes') page.prefixes.push(text);
    else if (t.name === 'IsTruncated' && parent === 'ListBucketResult') page.truncated = text.trim() === 'true';
    else if (t.name === 'NextContinuationToken' && parent === 'ListBucketResult') page.nextToken = text;
    stack.pop();
    text = '';
  });
  try {
    parser.write(xml).close();
  } catch (err) {
    throw new SourceError(`LIST ${prefix}: not an S3 list answer (${(err as Error).message})`, 'server', true, prefix);
  }
  if (root !== 'ListBucketResult')
    throw new SourceError(
      `LIST ${prefix}: expected <ListBucketResult>, got <${root ?? 'nothing'}>`,
      'server',
      true,
      prefix,
    );
  if (page.truncated && !page.nextToken)
    throw new SourceError(`LIST ${prefix}: a truncated page without NextContinuationToken`, 'server', true, prefix);
  return page;
}

export class DirPmcSource implements PmcSource {
  readonly description: string;
  constructor(private readonly root: string) {
    this.description = `PMC bucket mirror in ${root}`;
  }

  async get(key: string, opts: GetOptions = {}): Promise<SourceObject> {
    assertSafeKey(key);
    let body: Buffer;
    try {
      body = await fs.readFile(path.join(this.root, key));
    } catch (err) {
      // A prefix such as `PMC1.1/` is a directory here but no object in S3 (NoSuchKey): not-found, never retried.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR')
        throw new SourceError(`${key} not in mirror`, 'not-found', false, key);
      throw new SourceError(`read ${key}: ${(err as Error).message}`, 'network', true, key);
    }
    verify(key, body, opts.expectedMd5);
    return { key, body, etag: md5Hex(body) };
  }

  async getStream(key: string, opts: GetOptions = {}): Promise<Readable> {
    assertSafeKey(key);
    const file = path.join(this.root, key);
    const st = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR')
        throw new SourceError(`${key} not in mirror`, 'not-found', false, key);
      throw new SourceError(`read ${key}: ${err.message}`, 'network', true, key);
    });
    if (!st.isFile()) throw new SourceError(`${key} not in mirror`, 'not-found', false, key);
    const verifier = new VerifyingStream(key, opts.expectedMd5, st.size);
    const input = createReadStream(file);
    input.on('error', (err) => verifier.destroy(new SourceError(`read ${key}: ${err.message}`, 'network', true, key)));
    verifier.on('error', () => undefined); // kept on the stream for the consumer, as in HttpPmcSource.getStream
    return input.pipe(verifier);
  }

  async list(prefix: string, delimiter?: string): Promise<ListedPrefixes> {
    return listDirectory(this.root, prefix, delimiter);
  }
}

/** S3 ListObjectsV2 semantics (prefix + optional delimiter) over a directory tree; keys sorted like S3. */
export async function listDirectory(root: string, prefix: string, delimiter?: string): Promise<ListedPrefixes> {
  const keys: string[] = [];
  const baseDir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/') + 1) : '';
  async function walk(rel: string): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const k = rel + e.name;
      if (e.isDirectory()) {
        if ((k + '/').startsWith(prefix) || prefix.startsWith(k + '/')) await walk(k + '/');
      } else if (e.isFile() && k.startsWith(prefix)) keys.push(k);
    }
  }
  await walk(baseDir);
  keys.sort();
  if (!delimiter) return { prefixes: [], keys };
  const prefixes = new Set<string>();
  const direct: string[] = [];
  for (const k of keys) {
    const rest = k.slice(prefix.length);
    const i = rest.indexOf(delimiter);
    if (i >= 0) prefixes.add(prefix + rest.slice(0, i + delimiter.length));
    else direct.push(k);
  }
  return { prefixes: [...prefixes].sort(), keys: direct };
}

/** The cloud bucket by key. The legacy tree has no keys: it is read through activities/legacy (packages, file list). */
export function openSource(cfg: SourceConfig, timeoutMs?: number): PmcSource {
  if (cfg.kind === 'pmc-cloud-http') return new HttpPmcSource(cfg.baseUrl, timeoutMs);
  if (cfg.kind === 'pmc-cloud-dir') return new DirPmcSource(cfg.root);
  throw new Error(`source kind ${cfg.kind} is not a bucket: read it through activities/legacy`);
}
