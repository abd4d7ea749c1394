import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * A content-addressed store of downloaded objects under `<dataDir>/cache/objects/<md5[0:2]>/<md5>`, shared by
 * every release in the data dir: an object whose md5 is known (the metadata's `?md5=`, or a file extracted from a
 * legacy package) is downloaded once and then linked (or copied) into each unit that needs it. Entries are
 * written through a temporary name and a link, and verified again on every use, so a torn or tampered entry is
 * never placed (it is removed and the object downloaded again).
 */
export class ObjectCache {
  readonly dir: string;
  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'cache', 'objects');
  }

  pathOf(md5: string): string {
    const m = md5.toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(m)) throw new Error(`not an md5: ${md5}`);
    return path.join(this.dir, m.slice(0, 2), m);
  }

  /** Puts the cached copy of `md5` at `dest` (link, else copy) when the cache holds an intact one. */
  async restore(md5: string, dest: string): Promise<boolean> {
    const src = this.pathOf(md5);
    const got = await md5File(src).catch(() => null);
    if (got === null) return false;
    if (got !== md5.toLowerCase()) {
      await fs.rm(src, { force: true });
      return false;
    }
    await placeLinkOrCopy(src, dest);
    return true;
  }

  /** Adds a verified file to the cache (a link when the file system allows, else a copy). Never fails the caller. */
  async store(md5: string, file: string): Promise<void> {
    try {
      const dest = this.pathOf(md5);
      if (
        await fs.stat(dest).then(
          () => true,
          () => false,
        )
      )
        return;
      await placeLinkOrCopy(file, dest);
    } catch {
      /* a cache that cannot be written only costs a later download */
    }
  }
}

export async function md5File(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Places `src` at `dest` atomically: a hard link (no bytes copied) or, across file systems, a copy; then a rename. */
export async function placeLinkOrCopy(src: string, dest: string): Promise<void> {
  await fs.mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    try {
      await fs.link(src, tmp);
    } catch {
      await fs.copyFile(src, tmp);
    }
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
