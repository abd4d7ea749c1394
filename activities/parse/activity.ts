import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ndjson, writeFileAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { cancellationSignal, heartbeat, runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { articleXmlPath } from '../fetch/activity';
import type { PlannedArticle } from '../plan/plan';
import type { ReleaseInput } from '../../config/release';
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
  /** Warnings of published articles (repaired or degraded input: bad UTF-8, characters XML forbids...); in parse-warnings.ndjson. */
  warnings?: number;
}

/** An article published from repaired or degraded input: never silent, listed in report/warnings.ndjson. */
export interface ArticleWarning {
  article: string;
  stage: 'parse';
  detail: string;
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
  // A release started before these options existed carries none in its workflow input: the defaults apply.
  const figureOptions = {
    tableCellMentions: false,
    graphicalAbstracts: false,
    ...(task.release as { figures?: Partial<ReleaseInput['figures']> }).figures,
  };
  return runUnitStage(task, 'parse', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const lines: ParsedArticleLine[] = [];
    const warnings: ArticleWarning[] = [];
    const result: ParseResult = {
      articles: unit.articles.length,
      parsed: 0,
      failed: 0,
      figures: 0,
      candidates: 0,
      pmids: 0,
      pmidBatches: 0,
      withoutPmid: 0,
    };
    const signal = cancellationSignal();
    for (const planned of unit.articles) {
      signal?.throwIfAborted();
      const article = `${planned.pmcid}.${planned.version}`;
      const file = articleXmlPath(unitDir, planned.pmcid, planned.version);
      const size = await fs.stat(file).then(
        (st) => st.size,
        () => null,
      );
      if (size === null) continue; // not fetched: fetch already quarantined it
      let record: ArticleRecord;
      try {
        // Checked before reading, so a freak file never reaches memory.
        if (size > DEFAULT_JATS_LIMITS.maxBytes) {
          throw new JatsParseError(
            `article too large: ${size} bytes, over the limit of ${DEFAULT_JATS_LIMITS.maxBytes}`,
            null,
            null,
            'too-large',
          );
        }
        record = parseJats(await fs.readFile(file), {
          pmcidHint: planned.pmcid,
          tableCellMentions: figureOptions.tableCellMentions,
        });
      } catch (err) {
        result.failed++;
        // A JatsParseError is the article's fault; anything else is a reader bug, kept apart so it is noticed.
        const reason = err instanceof JatsParseError ? err.reason : 'parser-error';
        const detail =
          err instanceof JatsParseError ? err.message : `${(err as Error).name}: ${(err as Error).message}`;
        q.push(quarantine({ article, stage: 'parse', reason, detail }));
        heartbeat({ parsed: result.parsed, failed: result.failed, of: unit.articles.length });
        continue;
      }
      const mediaNames = planned.media.map((m) => path.posix.basename(m.key));
      const refused = planned.refusedMedia ?? [];
      const refusedNames = refused.map((m) => path.posix.basename(m.key.split('?')[0]!.replace(/\\/g, '/')));
      const claimed = new Set<number>();
      const figures: UnitFigure[] = record.figures.map((f, index) => {
        const key = figureKey(planned.pmcid, planned.version, index);
        const mediaFile = resolveMediaFile(f.graphicHref, mediaNames);
        const media = mediaFile ? planned.media.find((m) => path.posix.basename(m.key) === mediaFile)! : null;
        // A graphic that only a refused URL could serve is rejected for that URL's reason (one record, here).
        const refusedName = media ? null : resolveMediaFile(f.graphicHref, refusedNames);
        const refusedAt = refusedName === null ? -1 : refusedNames.indexOf(refusedName);
        if (refusedAt >= 0) claimed.add(refusedAt);
        let rejected: string | null = null;
        let stage: 'parse' | 'plan' = 'parse';
        let detail = '';
        if (f.role === 'graphical-abstract' && !figureOptions.graphicalAbstracts) {
          // Kept in the record with its role, but published only when the release asks for it.
          rejected = 'graphical-abstract';
          detail = `figure ${f.label ?? f.id ?? index} is a graphical abstract's image (release option figures.graphicalAbstracts)`;
        } else if (!f.caption.trim()) {
          rejected = 'no-caption';
          detail = `figure ${f.label ?? f.id ?? index} has no caption`;
        } else if (refusedAt >= 0) {
          const r = refused[refusedAt]!;
          rejected = r.reason;
          stage = 'plan';
          detail = `graphic href ${JSON.stringify(f.graphicHref)} resolves only to a refused media URL: ${r.detail}`;
        } else if (!media) {
          rejected = 'image-not-in-bucket';
          detail = `graphic href ${JSON.stringify(f.graphicHref)} matches none of the ${mediaNames.length} media files`;
        }
        if (rejected) q.push(quarantine({ article, figure: key, stage, reason: rejected, detail }));
        return {
          key,
          index,
          href: f.graphicHref,
          mediaFile,
          mediaKey: media?.key ?? null,
          mediaMd5: media?.md5 ?? null,
          caption: f.caption,
          rejected,
        };
      });
      // Refused image URLs that no figure would have used: still recorded, once, against the article.
      refused.forEach((r, i) => {
        if (!claimed.has(i)) q.push(quarantine({ article, stage: 'plan', reason: r.reason, detail: r.detail }));
      });
      for (const w of record.warnings) warnings.push({ article, stage: 'parse', detail: w });
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
    const notes = lines
      .filter((l) => !hasPmid(l))
      .map((l) => ({
        article: l.article,
        reason: 'no-pmid',
        detail: 'neither the metadata nor the article XML carries a PMID',
      }));
    result.withoutPmid = notes.length;
    const notesFile = path.join(unitDir, 'enrich-notes.ndjson');
    await writeFileAtomic(notesFile, ndjson(notes));
    result.warnings = warnings.length;
    const warningsFile = path.join(unitDir, 'parse-warnings.ndjson');
    await writeFileAtomic(warningsFile, ndjson(warnings));
    return { result, outputs: [out, notesFile, warningsFile] };
  });
}
