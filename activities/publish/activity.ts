import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { ReleaseInput } from '../../config/release';
import { copyFileAtomic, exists, mapLimit, removeStalePartials, sha256File, writeFileAtomic } from '../common/files';
import { heartbeat, layoutOf } from '../common/stage';
import { guarded, releaseTree, type ReleaseTree } from '../common/sync';
import { collectReleaseFiles, type ReleaseFile } from './files';

export interface PublishResult {
  /** The folder, or the Hub repo's URL. */
  target: string;
  /** Files the release publishes (the card included). */
  files: number;
  /** Files written (local folder) or uploaded (Hub) by this run. */
  uploaded: number;
  /** Files already there with the same content. */
  unchanged: number;
  /** Hub only: commits made by this run, and the bytes they carried. */
  commits?: number;
  bytesUploaded?: number;
}

/** Copies one file unless the target already has the same content; never leaves a partial file in place. */
async function place(src: string, dst: string): Promise<'uploaded' | 'unchanged'> {
  // One publish writes this folder: what a killed attempt left beside dst goes, whether or not dst is copied again.
  await removeStalePartials(dst);
  if (
    (await exists(dst)) &&
    (await fs.stat(dst)).size === (await fs.stat(src)).size &&
    (await sha256File(dst)) === (await sha256File(src))
  )
    return 'unchanged';
  await copyFileAtomic(src, dst);
  return 'uploaded';
}

/**
 * Publishes to a local folder laid out like the Hub dataset repo: `{subset}/NNNNNN.tar` with `sizes.json`,
 * `parquet/{subset}/NNNNNN.parquet`, `metadata/` (summary and quarantine), and the dataset card README.md.
 * A rerun rewrites nothing that is already there with the same content. (Hub publishing: `publishWorkflow`.)
 */
export async function publishRelease(release: ReleaseInput): Promise<PublishResult> {
  if (release.publish.kind !== 'local-folder') {
    throw ApplicationFailure.nonRetryable(
      `publishRelease writes a local folder; publish.kind ${release.publish.kind} goes through publishWorkflow`,
      'ConfigError',
    );
  }
  const layout = layoutOf(release);
  const target = layout.publishDir(release.publish.path);
  const { files, card } = await collectReleaseFiles(release);
  const stored = releaseTree(release);
  if (stored.remote && !path.isAbsolute(release.publish.path)) return publishInStore(stored, target, files, card);
  // A local folder on this (io) host: with a store, the files come from it first.
  await stored.pullAll(files.map((f) => ({ file: f.source })));
  const result: PublishResult = { target, files: files.length + 1, uploaded: 0, unchanged: 0 };
  for (const f of files) {
    result[await place(f.source, path.join(target, ...f.repoPath.split('/')))]++;
    heartbeat({ placed: result.uploaded + result.unchanged, of: files.length });
  }
  const cardPath = path.join(target, 'README.md');
  await removeStalePartials(cardPath);
  if ((await exists(cardPath)) && (await fs.readFile(cardPath, 'utf8')) === card) result.unchanged++;
  else {
    await writeFileAtomic(cardPath, card);
    result.uploaded++;
  }
  return result;
}

/**
 * The local-folder layout, in the release's store (`releases/<id>/<publish.path>/...`): each file is copied by the
 * store itself (no bytes through this worker), the card put last; a rerun copies again, which changes nothing.
 */
async function publishInStore(
  stored: ReleaseTree,
  target: string,
  files: readonly ReleaseFile[],
  card: string,
): Promise<PublishResult> {
  const store = stored.store!;
  const result: PublishResult = {
    target: store.url + stored.keyOf(target),
    files: files.length + 1,
    uploaded: 0,
    unchanged: 0,
  };
  await mapLimit(files, 8, async (f) => {
    await guarded(() => store.copy(stored.keyOf(f.source), stored.keyOf(path.join(target, ...f.repoPath.split('/')))));
    result.uploaded++;
    heartbeat({ placed: result.uploaded, of: files.length });
  });
  const cardKey = stored.keyOf(path.join(target, 'README.md'));
  if ((await guarded(() => store.get(cardKey)))?.toString('utf8') === card) result.unchanged++;
  else {
    await guarded(() => store.put(cardKey, card));
    result.uploaded++;
  }
  return result;
}
