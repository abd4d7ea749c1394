import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { SUBSETS, type ReleaseInput } from '../../config/release';
import { exists, readJson, sha256File, writeFileAtomic } from '../common/files';
import { heartbeat, layoutOf } from '../common/stage';
import { datasetCard } from './card';
import type { ReleaseSummary, ShardIndexEntry } from './finalize';

export interface PublishResult {
  target: string;
  files: number;
  uploaded: number;
  unchanged: number;
}

/** Copies one file unless the target already has the same content; never leaves a partial file in place. */
async function place(src: string, dst: string): Promise<'uploaded' | 'unchanged'> {
  if ((await exists(dst)) && (await fs.stat(dst)).size === (await fs.stat(src)).size && (await sha256File(dst)) === (await sha256File(src))) return 'unchanged';
  await fs.mkdir(path.dirname(dst), { recursive: true });
  const tmp = `${dst}.partial-${process.pid}`;
  await fs.copyFile(src, tmp);
  await fs.rename(tmp, dst);
  return 'uploaded';
}

/**
 * Publishes to a local folder laid out like the Hub dataset repo: `{subset}/NNNNNN.tar` with `sizes.json`,
 * `parquet/{subset}/NNNNNN.parquet`, `metadata/` (summary and quarantine), and the dataset card README.md.
 * A rerun rewrites nothing that is already there with the same content.
 */
export async function publishRelease(release: ReleaseInput): Promise<PublishResult> {
  const layout = layoutOf(release);
  const target = layout.publishDir(release.publish.path);
  const summary = await readJson<ReleaseSummary>(path.join(layout.reportDir, 'summary.json'));
  const plan = await readJson<{ inventoryManifest: string }>(layout.planFile);
  const snapshot = /(\d{4}-\d{2}-\d{2})T/.exec(plan.inventoryManifest)?.[1] ?? 'unknown';
  const placements: [string, string][] = [];
  for (const subset of SUBSETS) {
    const indexFile = path.join(layout.root, 'webdataset', subset, 'index.json');
    if (!(await exists(indexFile))) continue;
    const index = await readJson<ShardIndexEntry[]>(indexFile);
    for (const e of index) {
      placements.push([path.join(layout.root, 'webdataset', e.shard), path.join(target, e.shard)]);
      placements.push([path.join(layout.root, 'parquet', e.parquet), path.join(target, 'parquet', e.parquet)]);
    }
    placements.push([path.join(layout.root, 'webdataset', subset, 'sizes.json'), path.join(target, subset, 'sizes.json')]);
  }
  placements.push([path.join(layout.reportDir, 'summary.json'), path.join(target, 'metadata', 'summary.json')]);
  placements.push([path.join(layout.reportDir, 'quarantine.ndjson'), path.join(target, 'metadata', 'quarantine.ndjson')]);
  placements.push([path.join(layout.reportDir, 'enrichment.ndjson'), path.join(target, 'metadata', 'enrichment.ndjson')]);
  const result: PublishResult = { target, files: placements.length + 1, uploaded: 0, unchanged: 0 };
  for (const [src, dst] of placements) {
    result[await place(src, dst)]++;
    heartbeat({ placed: result.uploaded + result.unchanged, of: placements.length });
  }
  const card = datasetCard(summary, { repoId: release.publish.repoId, snapshot });
  const cardPath = path.join(target, 'README.md');
  if ((await exists(cardPath)) && (await fs.readFile(cardPath, 'utf8')) === card) result.unchanged++;
  else {
    await writeFileAtomic(cardPath, card);
    result.uploaded++;
  }
  return result;
}
