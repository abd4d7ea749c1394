import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
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

/** The PMC cloud bucket, over S3's HTTP API or from a directory holding the same layout. */
export interface PmcSource {
  readonly description: string;
  get(key: string, opts?: { expectedMd5?: string | null; signal?: AbortSignal }): Promise<SourceObject>;
  list(prefix: string, delimiter?: string): Promise<ListedPrefixes>;
}

/** Why a read failed, and whether trying again can help. */
export class SourceError extends Error {
  constructor(
    message: string,
    readonly kind: 'not-found' | 'forbidden' | 'checksum' | 'server' | 'network' | 'unsafe-key',
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
  const params = new URLSearchParams(m[2] ?? '');
  return { key: decodeURIComponent(m[1]!), md5: params.get('md5') };
}

function assertSafeKey(key: string): void {
  // Keys become file paths in the mirror and in the download cache: refuse anything that could escape.
  if (key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.') || key.includes('\\') || key.includes('\0')) {
    throw new SourceError(`unsafe object key ${JSON.stringify(key)}`, 'unsafe-key', false, key);
  }
}

function verify(key: string, body: Buffer, expectedMd5: string | null | undefined): void {
  if (expectedMd5 && md5Hex(body) !== expectedMd5.toLowerCase()) {
    throw new SourceError(`md5 mismatch for ${key}: expected ${expectedMd5}, got ${md5Hex(body)} (${body.length} bytes)`, 'checksum', true, key);
  }
}

export class HttpPmcSource implements PmcSource {
  readonly description: string;
  constructor(private readonly baseUrl: string, private readonly timeoutMs = 60_000) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.description = `PMC cloud bucket at ${this.baseUrl}`;
  }

  async get(key: string, opts: { expectedMd5?: string | null; signal?: AbortSignal } = {}): Promise<SourceObject> {
    assertSafeKey(key);
    const url = `${this.baseUrl}/${key.split('/').map(encodeURIComponent).join('/')}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: opts.signal ?? AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new SourceError(`GET ${key} failed: ${(err as Error).message}`, 'network', true, key);
    }
    if (res.status === 404) throw new SourceError(`GET ${key}: 404 NoSuchKey`, 'not-found', false, key);
    if (res.status === 403) throw new SourceError(`GET ${key}: 403 AccessDenied`, 'forbidden', false, key);
    if (!res.ok) throw new SourceError(`GET ${key}: HTTP ${res.status}`, 'server', true, key);
    let body: Buffer;
    try {
      body = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw new SourceError(`GET ${key}: body interrupted: ${(err as Error).message}`, 'network', true, key);
    }
    const declared = res.headers.get('content-length');
    if (declared !== null && Number(declared) !== body.length) {
      throw new SourceError(`GET ${key}: got ${body.length} of ${declared} bytes`, 'network', true, key);
    }
    verify(key, body, opts.expectedMd5);
    return { key, body, etag: res.headers.get('etag')?.replace(/"/g, '') ?? null };
  }

  async list(prefix: string, delimiter?: string): Promise<ListedPrefixes> {
    const out: ListedPrefixes = { prefixes: [], keys: [] };
    let token: string | null = null;
    do {
      const q = new URLSearchParams({ 'list-type': '2', prefix });
      if (delimiter) q.set('delimiter', delimiter);
      if (token) q.set('continuation-token', token);
      const res = await fetch(`${this.baseUrl}/?${q}`, { signal: AbortSignal.timeout(this.timeoutMs) });
      if (!res.ok) throw new SourceError(`LIST ${prefix}: HTTP ${res.status}`, res.status >= 500 ? 'server' : 'forbidden', res.status >= 500, prefix);
      const xml = await res.text();
      for (const m of xml.matchAll(/<CommonPrefixes>\s*<Prefix>([^<]*)<\/Prefix>/g)) out.prefixes.push(unescapeXml(m[1]!));
      for (const m of xml.matchAll(/<Contents>\s*<Key>([^<]*)<\/Key>/g)) out.keys.push(unescapeXml(m[1]!));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? (/<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? null) : null;
    } while (token);
    return out;
  }
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

export class DirPmcSource implements PmcSource {
  readonly description: string;
  constructor(private readonly root: string) {
    this.description = `PMC bucket mirror in ${root}`;
  }

  async get(key: string, opts: { expectedMd5?: string | null } = {}): Promise<SourceObject> {
    assertSafeKey(key);
    let body: Buffer;
    try {
      body = await fs.readFile(path.join(this.root, key));
    } catch (err) {
      // A prefix such as `PMC1.1/` is a directory here but no object in S3 (NoSuchKey): not-found, never retried.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') throw new SourceError(`${key} not in mirror`, 'not-found', false, key);
      throw new SourceError(`read ${key}: ${(err as Error).message}`, 'network', true, key);
    }
    verify(key, body, opts.expectedMd5);
    return { key, body, etag: md5Hex(body) };
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

export function openSource(cfg: SourceConfig): PmcSource {
  return cfg.kind === 'pmc-cloud-http' ? new HttpPmcSource(cfg.baseUrl) : new DirPmcSource(cfg.root);
}
