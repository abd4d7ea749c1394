import { ApplicationFailure } from '@temporalio/activity';
import { SUBSETS, type ReleaseInput, type Subset } from '../../config/release';
import { ndjson, readJsonIfExists, sha256Hex, writeFileAtomic, writeJsonAtomic } from '../common/files';
import { heartbeat, layoutOf, mapLimit } from '../common/stage';
import { openSource, SourceError } from '../fetch/source';
import { ArticleMetadataSchema, cutUnits, latestInventoryManifest, readInventory, selectArticles, type ArticleMetadata, type InventoryRow } from './plan';

/** Small enough for workflow history: counts and unit ids per subset, never the article lists. */
export interface PlanSummary {
  releaseId: string;
  inventoryManifest: string;
  inventoryRows: number;
  selectedArticles: number;
  excluded: Record<string, number>;
  subsets: Record<Subset, { units: number; articles: number; figureImages: number }>;
  planHash: string;
}

export async function planRelease(release: ReleaseInput): Promise<PlanSummary> {
  const layout = layoutOf(release);
  const source = openSource(release.source);
  const inputsHash = sha256Hex(JSON.stringify({ source: release.source, units: release.units }));
  const existing = await readJsonIfExists<PlanSummary & { inputsHash: string }>(layout.planFile);
  if (existing && existing.inputsHash === inputsHash) {
    const { inputsHash: _ignored, ...summary } = existing;
    return summary;
  }

  let manifestKey: string;
  try {
    manifestKey = await latestInventoryManifest(source);
  } catch (err) {
    if (err instanceof SourceError && !err.retryable) throw ApplicationFailure.nonRetryable(err.message, 'SourceUnavailable');
    throw err;
  }
  const rows: InventoryRow[] = [];
  for await (const row of readInventory(source, manifestKey)) {
    if (/^metadata\/PMC\d+\.\d+\.json$/.test(row.key)) rows.push(row);
    if (rows.length % 10_000 === 0) heartbeat({ phase: 'inventory', rows: rows.length });
  }
  let done = 0;
  const entries = await mapLimit(rows, 16, async (row) => {
    try {
      const obj = await source.get(row.key);
      const meta: ArticleMetadata = ArticleMetadataSchema.parse(JSON.parse(obj.body.toString('utf8')));
      return { row, meta };
    } catch (err) {
      if (err instanceof SourceError && err.retryable) throw err; // let Temporal retry the activity
      return { row, meta: null, error: (err as Error).message };
    } finally {
      if (++done % 200 === 0) heartbeat({ phase: 'metadata', done, of: rows.length });
    }
  });
  const { selected, excluded } = selectArticles(entries);
  const units = cutUnits(selected, release.units);
  for (const unit of units) await writeJsonAtomic(layout.unitFile(unit.unitId), unit);

  const subsets = Object.fromEntries(SUBSETS.map((s) => [s, { units: 0, articles: 0, figureImages: 0 }])) as PlanSummary['subsets'];
  for (const u of units) {
    subsets[u.subset].units++;
    subsets[u.subset].articles += u.articles.length;
    subsets[u.subset].figureImages += u.articles.reduce((n, a) => n + a.media.length, 0);
  }
  const excludedCounts: Record<string, number> = {};
  for (const e of excluded) excludedCounts[e.reason] = (excludedCounts[e.reason] ?? 0) + 1;
  await writeFileAtomic(`${layout.planDir}/excluded.ndjson`, ndjson(excluded));
  const summary: PlanSummary = {
    releaseId: release.releaseId,
    inventoryManifest: manifestKey,
    inventoryRows: rows.length,
    selectedArticles: selected.length,
    excluded: excludedCounts,
    subsets,
    planHash: sha256Hex(JSON.stringify(units)),
  };
  await writeJsonAtomic(layout.planFile, { ...summary, inputsHash });
  return summary;
}
