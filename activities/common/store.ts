import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { loadEnv, type Env } from '../../config/env';
import { copyFileAtomic, insideRoot, isPartialName, partialPathOf, writeFileAtomic } from './files';

/**
 * Where a release tree lives when its pools do not share a filesystem (docs/operations.md, "Object storage"): keys
 * are the tree's paths relative to the data dir (`releases/<id>/units/<unit>/manifests/parse.json`, `models/...`).
 * An object is visible only once it is whole (a local rename; an S3 PUT or a completed multipart upload), and a
 * stage's manifest is put after every output it names, so a manifest in the store is the commit of that stage.
 */
export interface StoredObject {
  key: string;
  bytes: number;
}

export interface ObjectStore {
  /** The store's URL, for messages (never a credential). */
  readonly url: string;
  head(key: string): Promise<StoredObject | null>;
  /** The object's bytes, or null when there is none. */
  get(key: string): Promise<Buffer | null>;
  /** Writes the object into `file` through a temporary name; false when there is none. */
  download(key: string, file: string): Promise<boolean>;
  put(key: string, body: Buffer | string): Promise<void>;
  /** Puts a local file (multipart past `multipartBytes` on S3). */
  upload(key: string, file: string): Promise<void>;
  /** Every object under `prefix` (a folder: ends with `/`), sorted by key. */
  list(prefix: string): Promise<StoredObject[]>;
  copy(from: string, to: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Why a store refused: `config` kinds are fixed by an operator (bucket, credentials, permissions), never by a retry. */
export type StoreErrorKind = 'no-bucket' | 'credentials' | 'denied' | 'unreachable' | 'bad-url' | 'other';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
  ) {
    super(message);
  }
  /** Whether retrying cannot help until someone changes a setting. */
  get misconfigured(): boolean {
    return (
      this.kind === 'no-bucket' || this.kind === 'credentials' || this.kind === 'denied' || this.kind === 'bad-url'
    );
  }
}

function checkKey(key: string): string {
  if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.' || p === ''))
    throw new StoreError('other', `bad store key ${JSON.stringify(key)}`);
  return key;
}

/** A folder as a store (`file:///data`): the shared-filesystem deployment, and the store contract's reference. */
export class FolderStore implements ObjectStore {
  readonly url: string;
  constructor(readonly root: string) {
    this.url = `file://${path.resolve(root)}`;
  }
  private file(key: string): string {
    return insideRoot(this.root, checkKey(key));
  }
  async head(key: string): Promise<StoredObject | null> {
    const st = await fsp.stat(this.file(key)).catch(() => null);
    return st?.isFile() ? { key, bytes: st.size } : null;
  }
  async get(key: string): Promise<Buffer | null> {
    return fsp.readFile(this.file(key)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw this.fail('read', key, err);
    });
  }
  async download(key: string, file: string): Promise<boolean> {
    const src = this.file(key);
    if (path.resolve(src) === path.resolve(file)) return fs.existsSync(src);
    if (!(await this.head(key))) return false;
    await copyFileAtomic(src, file).catch((err: NodeJS.ErrnoException) => {
      throw this.fail('read', key, err);
    });
    return true;
  }
  async put(key: string, body: Buffer | string): Promise<void> {
    await writeFileAtomic(this.file(key), body).catch((err: NodeJS.ErrnoException) => {
      throw this.fail('write', key, err);
    });
  }
  async upload(key: string, file: string): Promise<void> {
    const dst = this.file(key);
    if (path.resolve(dst) === path.resolve(file)) return;
    await copyFileAtomic(file, dst).catch((err: NodeJS.ErrnoException) => {
      throw this.fail('write', key, err);
    });
  }
  async list(prefix: string): Promise<StoredObject[]> {
    const dir = insideRoot(this.root, prefix.replace(/\/+$/, '') || '.');
    const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    const out: StoredObject[] = [];
    for (const e of entries) {
      if (!e.isFile() || isPartialName(e.name)) continue;
      const abs = path.join(e.parentPath, e.name);
      out.push({ key: path.relative(this.root, abs).split(path.sep).join('/'), bytes: (await fsp.stat(abs)).size });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  async copy(from: string, to: string): Promise<void> {
    await copyFileAtomic(this.file(from), this.file(to)).catch((err: NodeJS.ErrnoException) => {
      throw this.fail('copy', to, err);
    });
  }
  async delete(key: string): Promise<void> {
    await fsp.rm(this.file(key), { force: true });
  }
  private fail(op: string, key: string, err: NodeJS.ErrnoException): StoreError {
    const kind: StoreErrorKind =
      err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS' ? 'denied' : 'other';
    return new StoreError(kind, `store ${this.url} refused to ${op} ${key}: ${err.code ?? err.message}`);
  }
}

export interface S3Location {
  bucket: string;
  /** Key prefix inside the bucket, '' or ending with '/'. */
  prefix: string;
}

/** Part size of multipart uploads (shards run to about 1 GB; S3 allows 10,000 parts of 5 MiB to 5 GiB). */
const PART_BYTES = 64 * 1024 * 1024;

/** An S3-compatible bucket (`s3://bucket/prefix`) through the AWS SDK v3 client: SigV4, multipart for large files. */
export class S3Store implements ObjectStore {
  readonly url: string;
  private readonly endpoint: string;
  constructor(
    readonly location: S3Location,
    private readonly client: S3Client,
    endpoint: string | undefined,
  ) {
    this.url = `s3://${location.bucket}/${location.prefix}`;
    this.endpoint = endpoint ?? 'AWS S3';
  }
  private k(key: string): string {
    return this.location.prefix + checkKey(key);
  }
  async head(key: string): Promise<StoredObject | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.k(key) }));
      return { key, bytes: r.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) {
        if (!(await this.bucketMissing(err))) return null;
        throw this.noBucket();
      }
      throw this.fail('read', key, err);
    }
  }
  async get(key: string): Promise<Buffer | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.k(key) }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) {
        if (!(await this.bucketMissing(err))) return null;
        throw this.noBucket();
      }
      throw this.fail('read', key, err);
    }
  }
  async download(key: string, file: string): Promise<boolean> {
    let body: Readable;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.k(key) }));
      body = r.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) {
        if (!(await this.bucketMissing(err))) return false;
        throw this.noBucket();
      }
      throw this.fail('read', key, err);
    }
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const tmp = partialPathOf(file);
    try {
      await pipeline(body, fs.createWriteStream(tmp));
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw this.fail('read', key, err);
    }
    return true;
  }
  async put(key: string, body: Buffer | string): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.location.bucket, Key: this.k(key), Body: body }));
    } catch (err) {
      throw this.fail('write', key, err);
    }
  }
  async upload(key: string, file: string): Promise<void> {
    const size = (await fsp.stat(file)).size;
    try {
      if (size <= PART_BYTES) {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.location.bucket,
            Key: this.k(key),
            Body: await fsp.readFile(file),
          }),
        );
        return;
      }
      // A multipart upload: the object appears only when CompleteMultipartUpload succeeds (an abandoned one is
      // aborted by the SDK, and a bucket lifecycle rule takes away what a killed process leaves).
      await new Upload({
        client: this.client,
        params: { Bucket: this.location.bucket, Key: this.k(key), Body: fs.createReadStream(file) },
        partSize: PART_BYTES,
        queueSize: 4,
        leavePartsOnError: false,
      }).done();
    } catch (err) {
      throw this.fail('write', key, err);
    }
  }
  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.location.bucket,
            Prefix: this.location.prefix + prefix,
            ContinuationToken: token,
          }),
        );
        for (const o of r.Contents ?? [])
          out.push({ key: o.Key!.slice(this.location.prefix.length), bytes: o.Size ?? 0 });
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.fail('list', prefix, err);
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  async copy(from: string, to: string): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.location.bucket,
          Key: this.k(to),
          CopySource: `${this.location.bucket}/${encodeURI(this.k(from))}`,
        }),
      );
    } catch (err) {
      throw this.fail('copy', to, err);
    }
  }
  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.k(key) }));
    } catch (err) {
      throw this.fail('delete', key, err);
    }
  }

  /** A 404 on an object is either a missing object or a missing bucket: S3 says which only on GET and list. */
  private async bucketMissing(err: unknown): Promise<boolean> {
    if (errorName(err) === 'NoSuchBucket') return true;
    if (errorName(err) === 'NoSuchKey') return false;
    try {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, MaxKeys: 1 }));
      return false;
    } catch (e) {
      return errorName(e) === 'NoSuchBucket' || errorName(e) === 'NotFound';
    }
  }

  private noBucket(): StoreError {
    return new StoreError(
      'no-bucket',
      `bucket "${this.location.bucket}" does not exist at ${this.endpoint}: create it, or correct the release's store (${this.url})`,
    );
  }

  private fail(op: string, key: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const name = errorName(err);
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const where = `${this.url}${key}`;
    if (name === 'NoSuchBucket' || (status === 404 && op !== 'read')) return this.noBucket();
    if (CREDENTIAL_ERRORS.has(name))
      return new StoreError(
        'credentials',
        `${this.endpoint} refused the credentials of this environment for ${this.url} (${name}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a role) in the environment of the workers and the CLI`,
      );
    if (name === 'AccessDenied' || status === 403)
      return new StoreError(
        'denied',
        `${this.endpoint} refused to ${op} ${where} (${name || 'HTTP 403'}): the credentials of this environment lack permission for it`,
      );
    const code = (err as NodeJS.ErrnoException).code ?? (err as { cause?: NodeJS.ErrnoException }).cause?.code;
    if (code && NETWORK_CODES.has(code))
      return new StoreError(
        'unreachable',
        `cannot reach the S3 endpoint ${this.endpoint} (${code}) to ${op} ${where}: check BIOMEDICA_S3_ENDPOINT`,
      );
    const message = err instanceof Error ? err.message : String(err);
    return new StoreError(
      'other',
      `store ${op} of ${where} at ${this.endpoint} failed: ${name ? `${name}: ` : ''}${message}`,
    );
  }
}

const CREDENTIAL_ERRORS = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidClientTokenId',
  'ExpiredToken',
  'InvalidToken',
  'CredentialsProviderError',
]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH']);

function errorName(err: unknown): string {
  return (err as { name?: string; Code?: string }).Code ?? (err as { name?: string }).name ?? '';
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket' || status === 404;
}

/** Parses a store URL: `file:///abs/path` or `s3://bucket[/prefix]`. */
export function parseStoreUrl(url: string): { kind: 'file'; root: string } | ({ kind: 's3' } & S3Location) {
  const file = /^file:\/\/(\/.*)$/.exec(url);
  if (file) return { kind: 'file', root: decodeURIComponent(file[1]!) };
  const s3 = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (s3) {
    const prefix = (s3[2] ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix.split('/').some((p) => p === '..' || p === '.'))
      throw new StoreError('bad-url', `store ${url}: the prefix may not hold . or .. segments`);
    return { kind: 's3', bucket: s3[1]!, prefix: prefix ? `${prefix}/` : '' };
  }
  throw new StoreError(
    'bad-url',
    `store ${JSON.stringify(url)} is not file:///absolute/path or s3://bucket/prefix (a bucket name of 3-63 lowercase letters, digits, dots and hyphens)`,
  );
}

/** The S3 client settings of this worker: endpoint and credentials from its environment only. */
export function s3ClientConfig(env: Env): S3ClientConfig {
  const endpoint = env.BIOMEDICA_S3_ENDPOINT;
  return {
    region: env.AWS_REGION,
    ...(endpoint ? { endpoint, forcePathStyle: env.BIOMEDICA_S3_FORCE_PATH_STYLE ?? true } : {}),
    ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          credentials: {
            accessKeyId: env.AWS_ACCESS_KEY_ID,
            secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
            ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
          },
        }
      : {}),
    maxAttempts: 4,
  };
}

const opened = new Map<string, ObjectStore>();

/** The store a URL names, one client per URL and process. */
export function openStore(url: string, env: Env = loadEnv()): ObjectStore {
  let s = opened.get(url);
  if (s) return s;
  const parsed = parseStoreUrl(url);
  s =
    parsed.kind === 'file'
      ? new FolderStore(parsed.root)
      : new S3Store(parsed, new S3Client(s3ClientConfig(env)), env.BIOMEDICA_S3_ENDPOINT);
  opened.set(url, s);
  return s;
}

/** Forgets opened stores (tests that change the environment between runs). */
export function closeStores(): void {
  opened.clear();
}

/**
 * Proves a store usable from here: lists, puts a probe object, reads it back and deletes it. Throws the StoreError
 * that says what to fix (missing bucket, credentials, permissions, endpoint).
 */
export async function checkStore(store: ObjectStore): Promise<void> {
  const key = `.biomedica-probe-${process.pid}-${Date.now()}`;
  await store.list('releases/');
  await store.put(key, 'probe\n');
  const back = await store.get(key);
  if (back?.toString() !== 'probe\n')
    throw new StoreError('other', `store ${store.url} did not return the probe object it was given`);
  await store.delete(key);
}
