import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { loadEnv } from '../../config/env';
import type { ReleaseInput } from '../../config/release';
import { isPartialName, mapLimit } from './files';
import { openStore, parseStoreUrl, StoreError, type ObjectStore } from './store';

/**
 * The worker's folder for a release: with a `store`, this worker's own (BIOMEDICA_WORK_DIR, else dataDir); without
 * one, dataDir, which every worker shares.
 */
export function localDataDir(release: Pick<ReleaseInput, 'dataDir' | 'store'>): string {
  return path.resolve(release.store ? (loadEnv().BIOMEDICA_WORK_DIR ?? release.dataDir) : release.dataDir);
}

/**
 * A release's tree as this worker sees it: local files under `localDir`, and (with a store) the same paths as keys
 * in the store. Stages read their inputs after `pull` and commit their outputs with `push`; without a store (or
 * with a `file://` store that is the local folder itself) both do nothing, and the local folder is the tree.
 */
export class ReleaseTree {
  constructor(
    readonly store: ObjectStore | null,
    readonly localDir: string,
  ) {}

  get remote(): boolean {
    return this.store !== null;
  }

  keyOf(file: string): string {
    const rel = path.relative(this.localDir, path.resolve(file));
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel))
      throw new Error(`${file} is outside this worker's folder ${this.localDir}`);
    return rel.split(path.sep).join('/');
  }

  fileOf(key: string): string {
    return path.join(this.localDir, ...key.split('/'));
  }

  /** Puts the store's copy of `file` in place; false when the store has none. `bytes`: skip when the local copy has that size. */
  async pull(file: string, bytes?: number): Promise<boolean> {
    if (!this.store) return true;
    if (bytes !== undefined) {
      const st = await fsp.stat(file).catch(() => null);
      if (st?.isFile() && st.size === bytes) return true;
    }
    return guarded(() => this.store!.download(this.keyOf(file), file));
  }

  /** Pulls many files (with their recorded sizes), a few at a time. */
  async pullAll(files: readonly { file: string; bytes?: number }[], onEach?: () => void): Promise<void> {
    if (!this.store) return;
    await mapLimit(files, 16, async (f) => {
      if (!(await this.pull(f.file, f.bytes))) throw missing(this.store!, this.keyOf(f.file));
      onEach?.();
    });
  }

  /** Commits a local file to the store under its key. */
  async push(file: string): Promise<void> {
    if (!this.store) return;
    await guarded(() => this.store!.upload(this.keyOf(file), file));
  }

  async pushAll(files: readonly string[], onEach?: () => void): Promise<void> {
    if (!this.store) return;
    await mapLimit(files, 8, async (f) => {
      await this.push(f);
      onEach?.();
    });
  }

  /** Every file under a local folder, as this worker has it (for pushing what a stage wrote there). */
  async localFiles(dir: string): Promise<string[]> {
    const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isFile() && !isPartialName(e.name))
      .map((e) => path.join(e.parentPath, e.name))
      .sort();
  }

  /** The store's files under a folder (local paths and sizes); the local listing without a store. */
  async storedFiles(dir: string): Promise<{ file: string; bytes: number }[]> {
    if (!this.store) {
      const files = await this.localFiles(dir);
      return Promise.all(files.map(async (file) => ({ file, bytes: (await fsp.stat(file)).size })));
    }
    const listed = await guarded(() => this.store!.list(this.keyOf(dir) + '/'));
    return listed.map((o) => ({ file: this.fileOf(o.key), bytes: o.bytes }));
  }

  /** Pulls a whole folder from the store (what another host wrote there). */
  async pullDir(dir: string): Promise<void> {
    if (!this.store) return;
    await this.pullAll(await this.storedFiles(dir));
  }

  /** Reads a JSON object from the tree (the store's copy when there is a store); null when there is none. */
  async readJson<T>(file: string): Promise<T | null> {
    if (!this.store) {
      const text = await fsp.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null;
        throw err;
      });
      return text === null ? null : (JSON.parse(text) as T);
    }
    const body = await guarded(() => this.store!.get(this.keyOf(file)));
    return body === null ? null : (JSON.parse(body.toString('utf8')) as T);
  }
}

function missing(store: ObjectStore, key: string): ApplicationFailure {
  // Retryable: the stage that writes it may be committing right now (or will, once it is retried).
  return ApplicationFailure.retryable(`${store.url}${key} is not in the store`, 'StoreObjectMissing');
}

/**
 * A store error as Temporal should see it: a setting an operator must fix (bucket, credentials, permissions) fails
 * the activity at once with one line naming it; anything else (an unreachable endpoint, a 500) is retried.
 */
export async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreError) {
      if (err.misconfigured) throw ApplicationFailure.nonRetryable(err.message, `Store-${err.kind}`);
      throw ApplicationFailure.retryable(err.message, `Store-${err.kind}`);
    }
    throw err;
  }
}

/** The release's files on this worker: its store (when the release names one other than the local folder). */
export function releaseTree(release: Pick<ReleaseInput, 'dataDir' | 'store'>): ReleaseTree {
  const localDir = localDataDir(release);
  if (!release.store) return new ReleaseTree(null, localDir);
  let parsed;
  try {
    parsed = parseStoreUrl(release.store);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'Store-bad-url');
  }
  if (parsed.kind === 'file' && path.resolve(parsed.root) === localDir) return new ReleaseTree(null, localDir);
  return new ReleaseTree(openStore(release.store), localDir);
}

/**
 * A file of the data dir that the release names (the embedding model, the taxonomy), made present on this worker:
 * with a store, a relative path is a key there, pulled unless the local copy has the store's size. Absolute paths
 * are this host's own files. Returns the local path, or null when the store (or, without one, the folder) has none.
 */
export async function pullDataFile(release: ReleaseInput, relOrAbs: string): Promise<string | null> {
  const files = releaseTree(release);
  const file = path.isAbsolute(relOrAbs) ? relOrAbs : path.join(files.localDir, relOrAbs);
  if (!files.remote || path.isAbsolute(relOrAbs)) {
    return (await fsp.stat(file).catch(() => null))?.isFile() ? file : null;
  }
  const head = await guarded(() => files.store!.head(files.keyOf(file)));
  if (!head) return null;
  return (await files.pull(file, head.bytes)) ? file : null;
}

/** Commits a data-dir file this worker made (a generated model or taxonomy) to the release's store. */
export async function pushDataFile(release: ReleaseInput, file: string): Promise<void> {
  const files = releaseTree(release);
  if (files.remote && !path.relative(files.localDir, file).startsWith('..')) await files.push(file);
}

/**
 * The local path of a model or taxonomy the release names, pulled from its store when it has one. Missing is a
 * setting to fix, not something a retry mends.
 */
export async function releaseDataFile(release: ReleaseInput, relOrAbs: string): Promise<string> {
  const file = await pullDataFile(release, relOrAbs);
  if (file) return file;
  const local = path.isAbsolute(relOrAbs) ? relOrAbs : path.join(localDataDir(release), relOrAbs);
  const where =
    release.store && !path.isAbsolute(relOrAbs) ? `${release.store.replace(/\/*$/, '/')}${relOrAbs}` : local;
  throw ApplicationFailure.nonRetryable(
    `${where} not found (this worker's copy would be ${local}); the release's annotate settings name it`,
    'ModelMissing',
  );
}
