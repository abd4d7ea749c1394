/**
 * Pure planning for a Hub publish: which release files differ from the repo's tree, cut into commits bounded by
 * files and bytes, and the Hub's repository limits checked before anything is uploaded.
 */
import type { ContentIds } from './hashes';

/** A path of the repo as the Hub's tree / paths-info lists it. */
export interface RemoteEntry {
  path: string;
  type: string;
  size: number;
  /** Git object id: the blob sha1 of a regular file (of the pointer, for an LFS file). */
  oid?: string;
  /** LFS files: `oid` is the sha256 of the content. */
  lfs?: { oid: string; size: number };
}

/** A release file to publish. `source` is relative to the release folder. */
export interface PlannedFile {
  repoPath: string;
  source: string;
  bytes: number;
  /** Known sha256 (recorded by the stage that wrote the file). */
  sha256?: string;
}

export interface PlannedBatch {
  index: number;
  files: PlannedFile[];
  bytes: number;
}

export interface CommitBounds {
  maxFilesPerCommit: number;
  maxBytesPerCommit: number;
}

/** The Hub's repository limits (hub-docs storage-limits): files per repo and entries per folder. */
export const HUB_LIMITS = { filesPerRepo: 100_000, entriesPerFolder: 10_000 } as const;

/**
 * Whether the repo already holds exactly this content: an LFS entry is compared by sha256 and size, a regular one by
 * git blob id. `ids` is asked for only when the remote entry exists and the known values cannot decide.
 */
export async function sameContent(
  local: PlannedFile,
  remote: RemoteEntry | undefined,
  ids: () => Promise<ContentIds>,
): Promise<boolean> {
  if (!remote || remote.type !== 'file') return false;
  if (remote.lfs) {
    if (remote.lfs.size !== local.bytes) return false;
    return (local.sha256 ?? (await ids()).sha256) === remote.lfs.oid;
  }
  if (remote.size !== local.bytes) return false;
  return (await ids()).gitBlobSha1 === remote.oid;
}

/**
 * Greedy, in order: a commit closes when one more file would pass either bound; a single file above the byte bound
 * goes alone. The order is kept, so data lands before the card that describes it.
 */
export function cutBatches(files: readonly PlannedFile[], bounds: CommitBounds): PlannedBatch[] {
  const batches: PlannedBatch[] = [];
  let cur: PlannedBatch | null = null;
  for (const f of files) {
    if (
      !cur ||
      cur.files.length >= bounds.maxFilesPerCommit ||
      (cur.files.length > 0 && cur.bytes + f.bytes > bounds.maxBytesPerCommit)
    ) {
      cur = { index: batches.length, files: [], bytes: 0 };
      batches.push(cur);
    }
    cur.files.push(f);
    cur.bytes += f.bytes;
  }
  return batches;
}

/** Violations of the Hub's limits by the repo as it will be (its current files plus ours), or [] when within them. */
export function checkRepoLimits(paths: Iterable<string>): string[] {
  const all = new Set(paths);
  const problems: string[] = [];
  if (all.size > HUB_LIMITS.filesPerRepo)
    problems.push(`${all.size} files in the repo (the Hub allows ${HUB_LIMITS.filesPerRepo})`);
  const entries = new Map<string, Set<string>>();
  for (const p of all) {
    const parts = p.split('/');
    for (let i = 0; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      let set = entries.get(dir);
      if (!set) entries.set(dir, (set = new Set()));
      set.add(parts[i]!);
    }
  }
  for (const [dir, set] of [...entries].sort(([a], [b]) => a.localeCompare(b))) {
    if (set.size > HUB_LIMITS.entriesPerFolder)
      problems.push(
        `${set.size} entries in ${dir || 'the repo root'}/ (the Hub allows ${HUB_LIMITS.entriesPerFolder} per folder)`,
      );
  }
  return problems;
}
