import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ndjson, writeFileAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { heartbeat, runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { articleXmlPath } from '../fetch/activity';
import type { PlannedArticle } from '../plan/plan';
import { DEFAULT_JATS_LIMITS, JatsParseError, parseJats } from './jats';
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
  /** Articles PubMed cannot be asked about (no PMID in the metadata or the XML); listed in enrich-notes.ndjson. */
  withoutPmid: number;
}

export function figureKey(pmcid: string, version: number, index: number): string {
  return `${pmcid}_${version}_${String(index).padStart(3, '0')}`;
}

function pmidOf(l: ParsedArticleLine): string | null {
  const p = l.planned.pmid ?? l.record.pmid;
  return p && /^\d+$/.test(p) ? p : null;
}

function hasPmid(l: ParsedArticleLine): boolean {
  return pmidOf(l) !== null;
}

export function pmidBatchesOf(lines: readonly ParsedArticleLine[], batchSize: number): string[][] {
  const pmids = [...new Set(lines.map(pmidOf).filter((p): p is string => p !== null))].sort(
    (a, b) => Number(a) - Number(b),
  );
  const batches: string[][] = [];
  for (let i = 0; i < pmids.length; i += batchSize) batches.push(pmids.slice(i, i + batchSize));
  return batches;
}

export async function parseArticles(task: UnitTask): Promise<Staged<ParseResult>> {
  return runUnitStage(task, 'parse', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const lines: ParsedArticleLine[] = [];
    const result: ParseResult = { articles: unit.articles.length, parsed: 0, failed: 0, figures: 0, candidates: 0, pmids: 0, pmidBatches: 0, withoutPmid: 0 };
    for (const planned of unit.articles) {
      const article = `${planned.pmcid}.${planned.version}`;
      const file = articleXmlPath(unitDir, planned.pmcid, planned.version);
      const size = await fs.stat(file).then((st) => st.size, () => null);
      if (size === null) continue; // not fetched: fetch already quarantined it
      let record: ArticleRecord;
      try {
        // Checked before reading, so a freak file never reaches memory.
        if (size > DEFAULT_JATS_LIMITS.maxBytes) {
          throw new JatsParseError(`article too large: ${size} bytes, over the limit of ${DEFAULT_JATS_LIMITS.maxBytes}`, null, null, 'too-large');
        }
        record = parseJats(await fs.readFile(file), { pmcidHint: planned.pmcid });
      } catch (err) {
        result.failed++;
        // A JatsParseError is the article's fault; anything else is a reader bug, kept apart so it is noticed.
        const reason = err instanceof JatsParseError ? err.reason : 'parser-error';
        const detail = err instanceof JatsParseError ? err.message : `${(err as Error).name}: ${(err as Error).message}`;
        q.push(quarantine({ article, stage: 'parse', reason, detail }));
        heartbeat({ parsed: result.parsed, failed: result.failed, of: unit.articles.length });
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
    // Not a rejection (the article is still published), but never silent: enrichment skips these, with the reason.
    const notes = lines.filter((l) => !hasPmid(l)).map((l) => ({ article: l.article, reason: 'no-pmid', detail: 'neither the metadata nor the article XML carries a PMID' }));
    result.withoutPmid = notes.length;
    const notesFile = path.join(unitDir, 'enrich-notes.ndjson');
    await writeFileAtomic(notesFile, ndjson(notes));
    return { result, outputs: [out, notesFile] };
  });
}
