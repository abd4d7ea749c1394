import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Temporary files are written beside their target as `<name>.partial-<pid>-<random>` and renamed into place, so a
 * crash never leaves a file that looks complete. A process killed with SIGKILL cannot remove its temporary file:
 * `removeStalePartials` (before a target is written again) and `sweepPartials` (once nothing else writes a tree)
 * take such leftovers away, so no output folder keeps one.
 */
export function partialPathOf(file: string): string {
  return `${file}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

const PARTIAL_NAME = /\.partial-\d+(-[a-z0-9]+)?$/;

/** Whether a file name is a temporary file written by `partialPathOf` (or the older `<name>.partial-<pid>`). */
export function isPartialName(name: string): boolean {
  return PARTIAL_NAME.test(name);
}

/**
 * Removes temporary files left beside `file` by earlier attempts that died before renaming them. Call it only
 * where one writer owns `file` (a unit's own shard, parquet file or published copy): a live writer's temporary
 * file would go too, and its rename would then fail and be retried.
 */
export async function removeStalePartials(file: string): Promise<number> {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.partial-`;
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  let removed = 0;
  for (const name of names) {
    if (name.startsWith(prefix) && isPartialName(name)) {
      await fs.rm(path.join(dir, name), { force: true });
      removed++;
    }
  }
  return removed;
}

/** Removes every temporary file under `root` (recursively). Only for a tree no one is writing any more. */
export async function sweepPartials(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  const removed: string[] = [];
  for (const e of entries) {
    if (!e.isFile() || !isPartialName(e.name)) continue;
    const file = path.join(e.parentPath, e.name);
    await fs.rm(file, { force: true });
    removed.push(path.relative(root, file));
  }
  return removed.sort();
}

/** Fills a temporary file with `write` and renames it to `file`, so a crash never leaves a file that looks complete. */
async function throughTemporary(file: string, write: (tmp: string) => Promise<void>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = partialPathOf(file);
  try {
    await write(tmp);
    await fs.rename(tmp, file);
  } catch (err) {
    // A failed write (disk full) or rename must not leave a stray temporary file behind, retry after retry.
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Write through a temporary name and rename, so a crash never leaves a file that looks complete. */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  await throughTemporary(file, (tmp) => fs.writeFile(tmp, data));
}

/** Copy through a temporary name and rename, so a crash never leaves a file that looks complete. */
export async function copyFileAtomic(src: string, dst: string): Promise<void> {
  await throughTemporary(dst, (tmp) => fs.copyFile(src, tmp));
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

export async function readJsonIfExists<T>(file: string): Promise<T | null> {
  try {
    return await readJson<T>(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(file: string): Promise<string> {
  return sha256Hex(await fs.readFile(file));
}

export function ndjson(rows: readonly unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
}

export async function readNdjson<T>(file: string): Promise<T[]> {
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/**
 * The lines of an ndjson file one by one, parsed, as readNdjson gives them (blank lines skipped; none for a file
 * that does not exist), holding one chunk of the file at a time rather than all of it.
 */
export async function* iterateNdjson<T>(file: string): AsyncGenerator<T> {
  let stream: AsyncIterable<string>;
  try {
    const fh = await fs.open(file, 'r');
    stream = fh.createReadStream({ encoding: 'utf8', highWaterMark: 1 << 20 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let rest = '';
  for await (const chunk of stream) {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const l of lines) if (l.trim() !== '') yield JSON.parse(l) as T;
  }
  if (rest.trim() !== '') yield JSON.parse(rest) as T;
}

/**
 * An ndjson file written a line at a time (the same bytes as writeFileAtomic(file, ndjson(rows))) through a
 * temporary name, renamed by close(); abort() drops the temporary file. Lines are gathered into writes of about
 * 1 MiB, so the file's contents are never held whole.
 */
export class NdjsonWriter {
  private buffered: string[] = [];
  private bufferedChars = 0;
  private constructor(
    readonly file: string,
    private readonly tmp: string,
    private readonly fh: fs.FileHandle,
  ) {}

  static async create(file: string): Promise<NdjsonWriter> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = partialPathOf(file);
    return new NdjsonWriter(file, tmp, await fs.open(tmp, 'w'));
  }

  async write(row: unknown): Promise<void> {
    const line = JSON.stringify(row) + '\n';
    this.buffered.push(line);
    this.bufferedChars += line.length;
    if (this.bufferedChars >= 1 << 20) await this.flush();
  }

  private async flush(): Promise<void> {
    const text = this.buffered.join('');
    this.buffered = [];
    this.bufferedChars = 0;
    if (text !== '') await this.fh.writeFile(text, 'utf8');
  }

  async close(): Promise<void> {
    try {
      await this.flush();
      await this.fh.close();
      await fs.rename(this.tmp, this.file);
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await fs.rm(this.tmp, { force: true }).catch(() => undefined);
  }
}

/** Resolve a path that must stay inside `root` (no `..` escapes); throws otherwise. */
export function insideRoot(root: string, ...parts: string[]): string {
  const resolved = path.resolve(root, ...parts);
  const rootResolved = path.resolve(root);
  if (resolved !== rootResolved && !resolved.startsWith(rootResolved + path.sep)) {
    throw new Error(`path ${JSON.stringify(parts.join('/'))} escapes ${rootResolved}`);
  }
  return resolved;
}

/**
 * Runs `fn` over items with at most `limit` in flight, preserving result order. After a failure no further item
 * starts, and the first error is thrown only once every call in flight has settled, so the caller's clean-up never
 * races work that is still running.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | null = null;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  });
  await Promise.all(workers);
  if (failure) throw (failure as { error: unknown }).error;
  return results;
}
