import * as path from 'node:path';
import { SUBSETS, type ReleaseInput } from '../../config/release';
import { exists, readJson } from '../common/files';
import { layoutOf } from '../common/stage';
import { releaseTree } from '../common/sync';
import { datasetCard } from './card';
import type { ReleaseSummary, ShardIndexEntry } from './finalize';

/** One file of the published repo and where its bytes are in the release folder. */
export interface ReleaseFile {
  /** Path inside the dataset repo (POSIX separators). */
  repoPath: string;
  /** Absolute path of the local file. */
  source: string;
  /** Known content hash (recorded by the shard / parquet stage while writing), or undefined: hash when needed. */
  sha256?: string;
}

export interface ReleaseFiles {
  /** Data first (shards, parquet, sizes.json per subset), then metadata; the card is not in this list. */
  files: ReleaseFile[];
  /** The dataset card README.md. */
  card: string;
  summary: ReleaseSummary;
}

/**
 * Everything a release publishes, in repo layout: `{subset}/NNNNNN.tar`, `{subset}/sizes.json`,
 * `parquet/{subset}/NNNNNN.parquet`, `metadata/{summary.json,quarantine.ndjson,warnings.ndjson,enrichment.ndjson}`, and the card.
 * Read from the release's finalized outputs on disk (never from workflow history).
 */
export async function collectReleaseFiles(release: ReleaseInput): Promise<ReleaseFiles> {
  const layout = layoutOf(release);
  // With a store, the finalized report and indexes are pulled from it (finalize ran on a cpu worker anywhere).
  const stored = releaseTree(release);
  await stored.pull(path.join(layout.reportDir, 'summary.json'));
  await stored.pull(layout.planFile);
  for (const subset of SUBSETS) await stored.pull(path.join(layout.root, 'webdataset', subset, 'index.json'));
  const summary = await readJson<ReleaseSummary>(path.join(layout.reportDir, 'summary.json'));
  const plan = await readJson<{ inventoryManifest: string }>(layout.planFile);
  const snapshot = /(\d{4}-\d{2}-\d{2})T/.exec(plan.inventoryManifest)?.[1] ?? 'unknown';
  const files: ReleaseFile[] = [];
  for (const subset of SUBSETS) {
    const indexFile = path.join(layout.root, 'webdataset', subset, 'index.json');
    if (!(await exists(indexFile))) continue;
    const index = await readJson<ShardIndexEntry[]>(indexFile);
    for (const e of index) {
      files.push({ repoPath: e.shard, source: path.join(layout.root, 'webdataset', e.shard), sha256: e.sha256 });
      files.push({
        repoPath: `parquet/${e.parquet}`,
        source: path.join(layout.root, 'parquet', e.parquet),
        sha256: e.parquetSha256,
      });
    }
    files.push({
      repoPath: `${subset}/sizes.json`,
      source: path.join(layout.root, 'webdataset', subset, 'sizes.json'),
    });
  }
  for (const name of ['summary.json', 'quarantine.ndjson', 'warnings.ndjson', 'enrichment.ndjson']) {
    files.push({ repoPath: `metadata/${name}`, source: path.join(layout.reportDir, name) });
  }
  const card = datasetCard(summary, { repoId: release.publish.repoId, snapshot });
  return { files, card, summary };
}
