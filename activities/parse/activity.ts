import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ndjson, writeFileAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { heartbeat, runUnitStage, type UnitTask } from '../common/stage';
import { articleXmlPath } from '../fetch/activity';
import type { PlannedArticle } from '../plan/plan';
import { parseJats } from './jats';
import { resolveMediaFile } from './media';
import type { ArticleRecord } from './records';

/** One figure of one article, with its sample key and the bucket object its graphic resolves to. */
export interface UnitFigure {
  /** Dot-free, deterministic sample key: `<PMCID>_<version>_<figure index>`. */
  key: string;
  index: number;
  href: string;
  mediaFile: string | null;
  mediaKey: string | null;
  mediaMd5: string | null;
  caption: string;
  /** Why this figure yields no sample, or null while it is still a candidate. */
  rejected: string | null;
}

export interface ParsedArticleLine {
  article: string;
  planned: PlannedArticle;
  record: ArticleRecord;
  figures: UnitFigure[];
}

export interface ParseResult {
  articles: number;
  parsed: number;
  failed: number;
  figures: number;
  candidates: number;
  pmids: number;
  pmidBatches: number;
}

export function figureKey(pmcid: string, version: number, index: number): string {
  return `${pmcid}_${version}_${String(index).padStart(3, '0')}`;
}

export function pmidBatchesOf(lines: readonly ParsedArticleLine[], batchSize: number): string[][] {
  const pmids = [...new Set(lines.map((l) => l.planned.pmid ?? l.record.pmid).filter((p): p is string => !!p && /^\d+$/.test(p)))].sort(
    (a, b) => Number(a) - Number(b),
  );
  const batches: string[][] = [];
  for (let i = 0; i < pmids.length; i += batchSize) batches.push(pmids.slice(i, i + batchSize));
  return batches;
}

export async function parseArticles(task: UnitTask): Promise<ParseResult> {
  return runUnitStage(task, 'parse', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const lines: ParsedArticleLine[] = [];
    const result: ParseResult = { articles: unit.articles.length, parsed: 0, failed: 0, figures: 0, candidates: 0, pmids: 0, pmidBatches: 0 };
    for (const planned of unit.articles) {
      const article = `${planned.pmcid}.${planned.version}`;
      let xml: Buffer;
      try {
        xml = await fs.readFile(articleXmlPath(unitDir, planned.pmcid, planned.version));
      } catch {
        continue; // not fetched: fetch already quarantined it
      }
      let record: ArticleRecord;
      try {
        record = parseJats(xml, { pmcidHint: planned.pmcid });
      } catch (err) {
        result.failed++;
        q.push(quarantine({ article, stage: 'parse', reason: 'invalid-xml', detail: (err as Error).message }));
        continue;
      }
      const mediaNames = planned.media.map((m) => path.posix.basename(m.key));
      const figures: UnitFigure[] = record.figures.map((f, index) => {
        const key = figureKey(planned.pmcid, planned.version, index);
        const mediaFile = resolveMediaFile(f.graphicHref, mediaNames);
        const media = mediaFile ? planned.media.find((m) => path.posix.basename(m.key) === mediaFile)! : null;
        let rejected: string | null = null;
        if (!f.caption.trim()) rejected = 'no-caption';
        else if (!media) rejected = 'image-not-in-bucket';
        if (rejected) {
          q.push(
            quarantine({
              article,
              figure: key,
              stage: 'parse',
              reason: rejected,
              detail: rejected === 'no-caption' ? `figure ${f.label ?? f.id ?? index} has no caption` : `graphic href ${JSON.stringify(f.graphicHref)} matches none of the ${mediaNames.length} media files`,
            }),
          );
        }
        return { key, index, href: f.graphicHref, mediaFile, mediaKey: media?.key ?? null, mediaMd5: media?.md5 ?? null, caption: f.caption, rejected };
      });
      result.parsed++;
      result.figures += figures.length;
      result.candidates += figures.filter((f) => !f.rejected).length;
      lines.push({ article, planned, record, figures });
      heartbeat({ parsed: result.parsed, of: unit.articles.length });
    }
    const batches = pmidBatchesOf(lines, task.release.entrez.batchSize);
    result.pmids = batches.reduce((n, b) => n + b.length, 0);
    result.pmidBatches = task.release.entrez.enabled ? batches.length : 0;
    const out = path.join(unitDir, 'articles.ndjson');
    await writeFileAtomic(out, ndjson(lines));
    return { result, outputs: [out] };
  });
}
