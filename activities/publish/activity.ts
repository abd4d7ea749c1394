import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { ReleaseInput } from '../../config/release';
import { copyFileAtomic, exists, removeStalePartials, sha256File, writeFileAtomic } from '../common/files';
import { heartbeat, layoutOf } from '../common/stage';
import { collectReleaseFiles } from './files';

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
