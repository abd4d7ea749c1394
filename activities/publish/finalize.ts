import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { SUBSETS, type ReleaseInput, type Subset } from '../../config/release';
import type { AnnotateResult } from '../annotate/activity';
import {
  exists,
  ndjson,
  partialPathOf,
  readJson,
  readNdjson,
  sweepPartials,
  writeFileAtomic,
  writeJsonAtomic,
} from '../common/files';
import { shardName } from '../common/layout';
import { quarantine, type QuarantineRecord } from '../common/quarantine';
import { releaseTree } from '../common/sync';
import { activityLog, heartbeat, layoutOf, type StageManifest } from '../common/stage';
import type { EnrichBatchResult } from '../enrich/activity';
import type { ParquetResult } from '../parquet/activity';
import type { ArticleWarning, ParseResult } from '../parse/activity';
import type { PlanSummary } from '../plan/activity';
import type { Exclusion, PlannedUnit } from '../plan/plan';
import type { ShardResult } from '../shard/activity';

export interface ShardIndexEntry {
  shard: string;
  unit: string;
  samples: number;
  articles: number;
  bytes: number;
  sha256: string;
  parquet: string;
  parquetRows: number;
  parquetSha256: string;
}

/** An article published without PubMed enrichment, and why. */
export interface EnrichmentNote {
  article: string | null;
  pmid?: string;
  reason: string;
  detail: string;
}

export interface ReleaseSummary {
  releaseId: string;
  inventoryManifest: string;
  articles: { planned: number; parsed: number; excludedAtPlan: Record<string, number> };
  figures: number;
  samples: number;
  rejected: number;
  /** Records of the units (figure- and article-level) by `stage:reason`; the plan's exclusions are in articles.excludedAtPlan. */
  rejectedByReason: Record<string, number>;
  /** Articles published from repaired or degraded input (report/warnings.ndjson). */
  warnings: number;
  /** `licenses`: planned articles per PMC license code (`none` without one). */
  subsets: Record<
    Subset,
    { shards: number; samples: number; articles: number; bytes: number; licenses: Record<string, number> }
  >;
  enrichment: { pmids: number; returned: number; notReturned: number; failedBatches: number; withoutPmid: number };
  annotation: { provider: string | null; taxonomyVersion: string | null };
}

const STAGE_ORDER: QuarantineRecord['stage'][] = [
  'plan',
  'fetch',
  'parse',
  'enrich',
  'media',
  'images',
  'annotate',
  'shard',
  'parquet',
  'publish',
];

/** Reads every unit's manifests from disk (never from workflow history) and writes the release's indexes and report. */
export async function finalizeRelease(release: ReleaseInput): Promise<ReleaseSummary> {
  const layout = layoutOf(release);
  // With a store, every unit's manifests, rejections and notes are pulled from it (units ran on other hosts).
  const files = releaseTree(release);
  await files.pull(layout.planFile);
  await files.pull(path.join(layout.planDir, 'excluded.ndjson'));
  const plan = await readJson<PlanSummary>(layout.planFile);
  // Every unit has finished, so nothing writes under the release any more: temporary files that killed workers
  // left behind (they cannot remove their own) go before the indexes are written. Folder by folder (each unit's
  // below, with a heartbeat), never one listing of the whole release: at full scale it holds 30 million images.
  let swept = 0;
  for (const dir of ['plan', 'webdataset', 'parquet', 'report'])
    swept += (await sweepPartials(path.join(layout.root, dir))).length;
  const summary: ReleaseSummary = {
    releaseId: release.releaseId,
    inventoryManifest: plan.inventoryManifest,
    articles: { planned: plan.selectedArticles, parsed: 0, excludedAtPlan: plan.excluded },
    figures: 0,
    samples: 0,
    rejected: 0,
    rejectedByReason: {},
    subsets: Object.fromEntries(
      SUBSETS.map((s) => [s, { shards: 0, samples: 0, articles: 0, bytes: 0, licenses: {} }]),
    ) as ReleaseSummary['subsets'],
    warnings: 0,
    enrichment: { pmids: 0, returned: 0, notReturned: 0, failedBatches: 0, withoutPmid: 0 },
    annotation: { provider: null, taxonomyVersion: null },
  };
  const quarantined: QuarantineRecord[] = [];
  const warnings: ArticleWarning[] = [];
  const enrichmentNotes: EnrichmentNote[] = [];
  for (const subset of SUBSETS) {
    const index: ShardIndexEntry[] = [];
    const sizes: Record<string, number> = {};
    for (let i = 0; i < plan.subsets[subset].units; i++) {
      const unitId = `${subset}-${shardName(i)}`;
      if (files.remote) {
        const unitDir = layout.unitDir(unitId);
        await files.pull(layout.unitFile(unitId));
        await files.pullAll([
          ...(await files.storedFiles(path.join(unitDir, 'manifests'))),
          ...(await files.storedFiles(path.join(unitDir, 'quarantine'))),
        ]);
        for (const name of ['enrich-notes.ndjson', 'parse-warnings.ndjson']) await files.pull(path.join(unitDir, name));
      }
      const unit = await readJson<PlannedUnit>(layout.unitFile(unitId));
      swept += (await sweepPartials(layout.unitDir(unitId))).length;
      heartbeat({ subset, unit: i });
      const manifest = <R>(stage: string) => readJson<StageManifest<R>>(layout.stageManifest(unit.unitId, stage));
      const parse = (await manifest<ParseResult>('parse')).result;
      const shard = (await manifest<ShardResult>('shard')).result;
      const parquet = (await manifest<ParquetResult>('parquet')).result;
      const annotate = (await manifest<AnnotateResult>('annotate')).result;
      summary.articles.parsed += parse.parsed;
      summary.figures += parse.figures;
      summary.annotation = { provider: annotate.provider, taxonomyVersion: annotate.taxonomyVersion };
      summary.enrichment.withoutPmid += parse.withoutPmid ?? 0;
      enrichmentNotes.push(
        ...(await readNdjson<EnrichmentNote>(path.join(layout.unitDir(unit.unitId), 'enrich-notes.ndjson'))),
      );
      for (let b = 0; b < parse.pmidBatches; b++) {
        const e = (await manifest<EnrichBatchResult>(`enrich-${String(b).padStart(4, '0')}`)).result;
        summary.enrichment.pmids += e.requested;
        summary.enrichment.returned += e.returned;
        summary.enrichment.notReturned += e.notReturned.length;
        if (e.failed) summary.enrichment.failedBatches++;
        const reason = e.failed ? 'batch-failed' : 'not-returned';
        for (const pmid of e.notReturned)
          enrichmentNotes.push({
            article: null,
            pmid,
            reason,
            detail: e.failed ?? 'PubMed returned no record for this PMID',
          });
      }
      for (const stage of ['fetch', 'parse', 'media', 'images', 'annotate', 'shard'] as const) {
        quarantined.push(...(await readNdjson<QuarantineRecord>(layout.quarantineFile(unit.unitId, stage))));
      }
      warnings.push(
        ...(await readNdjson<ArticleWarning>(path.join(layout.unitDir(unit.unitId), 'parse-warnings.ndjson'))),
      );
      for (const [k, part] of shard.shards.entries()) {
        const pq = parquet.files[k]!;
        if (pq.shard !== part.shard)
          throw new Error(`unit ${unit.unitId}: parquet file ${pq.file} is not beside shard ${part.shard}`);
        index.push({
          shard: part.shard,
          unit: unit.unitId,
          samples: part.samples,
          articles: part.articles,
          bytes: part.bytes,
          sha256: part.sha256,
          parquet: pq.file,
          parquetRows: pq.rows,
          parquetSha256: pq.sha256,
        });
        sizes[path.posix.basename(part.shard)] = part.samples;
      }
      const s = summary.subsets[subset];
      for (const a of unit.articles) {
        const code = a.licenseCode ?? 'none';
        s.licenses[code] = (s.licenses[code] ?? 0) + 1;
      }
      s.shards += shard.shards.length;
      s.samples += shard.samples;
      s.articles += shard.articles;
      s.bytes += shard.bytes;
      summary.samples += shard.samples;
    }
    if (index.length > 0) {
      await writeJsonAtomic(path.join(layout.root, 'webdataset', subset, 'sizes.json'), sizes);
      await writeJsonAtomic(path.join(layout.root, 'webdataset', subset, 'index.json'), index);
    }
  }
  if (swept > 0)
    activityLog('info', 'finalizeRelease: removed temporary files left by killed attempts', {
      release: release.releaseId,
      files: swept,
    });
  quarantined.sort(
    (a, b) =>
      STAGE_ORDER.indexOf(a.stage) - STAGE_ORDER.indexOf(b.stage) ||
      String(a.article).localeCompare(String(b.article)) ||
      String(a.figure).localeCompare(String(b.figure)),
  );
  // Figure-level rejections are what separates figures from samples; article-level ones are counted too.
  for (const q of quarantined) {
    const k = `${q.stage}:${q.reason}`;
    summary.rejectedByReason[k] = (summary.rejectedByReason[k] ?? 0) + 1;
    if (q.figure) summary.rejected++;
  }
  summary.warnings = warnings.length;
  await writeQuarantineReport(
    path.join(layout.reportDir, 'quarantine.ndjson'),
    path.join(layout.planDir, 'excluded.ndjson'),
    quarantined,
  );
  await writeFileAtomic(path.join(layout.reportDir, 'warnings.ndjson'), ndjson(warnings));
  await writeFileAtomic(path.join(layout.reportDir, 'enrichment.ndjson'), ndjson(enrichmentNotes));
  await writeJsonAtomic(path.join(layout.reportDir, 'summary.json'), summary);
  if (files.remote) {
    const written = SUBSETS.flatMap((subset) =>
      summary.subsets[subset].shards > 0
        ? ['sizes.json', 'index.json'].map((n) => path.join(layout.root, 'webdataset', subset, n))
        : [],
    );
    // summary.json last: it says the report is whole.
    const report = ['quarantine.ndjson', 'warnings.ndjson', 'enrichment.ndjson', 'summary.json'];
    await files.pushAll(written);
    for (const n of report) await files.push(path.join(layout.reportDir, n));
  }
  return summary;
}

/** An exclusion of the plan (plan/excluded.ndjson) as a record of the release's rejection report. */
export function exclusionRecord(e: Exclusion): QuarantineRecord {
  const version = /(PMC\d+\.\d+)\.json$/.exec(e.key)?.[1];
  return quarantine({ article: version ?? e.pmcid, stage: 'plan', reason: e.reason, detail: `${e.key}: ${e.detail}` });
}

/**
 * report/quarantine.ndjson: every rejection of the release, the plan's exclusions first (streamed from
 * plan/excluded.ndjson in plan order: at full scale they are millions of lines, never held at once), then the
 * units' records in stage order. Written through a temporary name, so a reader never sees half a report.
 */
async function writeQuarantineReport(
  file: string,
  excludedFile: string,
  records: readonly QuarantineRecord[],
): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = partialPathOf(file);
  const out = createWriteStream(tmp);
  const write = (line: string) => (out.write(line) ? Promise.resolve() : once(out, 'drain').then(() => undefined));
  try {
    if (await exists(excludedFile)) {
      let n = 0;
      for await (const line of createInterface({
        input: createReadStream(excludedFile, 'utf8'),
        crlfDelay: Infinity,
      })) {
        if (!line.trim()) continue;
        await write(JSON.stringify(exclusionRecord(JSON.parse(line) as Exclusion)) + '\n');
        if (++n % 100_000 === 0) heartbeat({ report: 'quarantine', exclusions: n });
      }
    }
    for (const r of records) await write(JSON.stringify(r) + '\n');
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await fsp.rename(tmp, file);
  } catch (err) {
    out.destroy();
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
