import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { exists, insideRoot, readNdjson, writeFileAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { cancellationSignal, heartbeat, mapLimit, runUnitStage, type UnitTask } from '../common/stage';
import type { ParsedArticleLine } from '../parse/activity';
import { md5Hex, openSource, SourceError, type PmcSource } from './source';

/** Downloads in flight per activity; the task queue's rate limit bounds the total across workers. */
const CONCURRENCY = 8;

export interface FetchArticlesResult {
  articles: number;
  fetched: number;
  reused: number;
  failed: number;
}

export function articleXmlPath(unitDir: string, pmcid: string, version: number): string {
  return path.join(unitDir, 'articles', `${pmcid}.${version}.xml`);
}

export function mediaPath(unitDir: string, mediaKey: string): string {
  return insideRoot(path.join(unitDir, 'media'), mediaKey);
}

/** A file already in place counts only if its md5 is the one the metadata promised. */
async function intactCopy(file: string, md5: string | null): Promise<boolean> {
  if (!(await exists(file))) return false;
  return md5 === null ? true : md5Hex(await fs.readFile(file)) === md5;
}

/**
 * Downloads one object into place unless an intact copy is there. Transient failures escape, so Temporal retries
 * the activity with backoff; permanent ones (404, 403, a persistent md5 mismatch) are thrown as SourceError for
 * the caller to quarantine.
 */
async function downloadOnce(source: PmcSource, obj: { key: string; md5: string | null }, file: string): Promise<'fetched' | 'reused'> {
  if (await intactCopy(file, obj.md5)) return 'reused';
  try {
    const got = await source.get(obj.key, { expectedMd5: obj.md5, signal: cancellationSignal() });
    await writeFileAtomic(file, got.body);
    return 'fetched';
  } catch (err) {
    const permanent = err instanceof SourceError && (!err.retryable || err.kind === 'checksum');
    if (!permanent) throw new TransientFetchError(err as Error);
    throw err;
  }
}

class TransientFetchError extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}

export async function fetchArticles(task: UnitTask): Promise<FetchArticlesResult> {
  return runUnitStage(task, 'fetch', async ({ layout, unit, quarantine: q }) => {
    const source = openSource(task.release.source);
    const unitDir = layout.unitDir(unit.unitId);
    const result: FetchArticlesResult = { articles: unit.articles.length, fetched: 0, reused: 0, failed: 0 };
    const outputs: string[] = [];
    await mapLimit(unit.articles, CONCURRENCY, async (a) => {
      const file = articleXmlPath(unitDir, a.pmcid, a.version);
      try {
        result[await downloadOnce(source, a.xml, file)]++;
        outputs.push(file);
      } catch (err) {
        if (err instanceof TransientFetchError) throw err.cause;
        result.failed++;
        q.push(quarantine({ article: `${a.pmcid}.${a.version}`, stage: 'fetch', reason: err instanceof SourceError ? `xml-${err.kind}` : 'xml-error', detail: (err as Error).message }));
      }
      heartbeat({ fetched: result.fetched + result.reused, of: unit.articles.length });
    });
    outputs.sort();
    return { result, outputs };
  });
}

export interface FetchMediaResult {
  wanted: number;
  fetched: number;
  reused: number;
  failed: number;
}

/** Fetches only the media files that parse resolved for figures (never PDFs, text or supplements). */
export async function fetchFigureMedia(task: UnitTask): Promise<FetchMediaResult> {
  return runUnitStage(task, 'media', async ({ layout, unit, quarantine: q }) => {
    const source = openSource(task.release.source);
    const unitDir = layout.unitDir(unit.unitId);
    const parsed = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
    const wanted = new Map<string, { key: string; md5: string | null; article: string; figures: string[] }>();
    for (const line of parsed) {
      for (const f of line.figures) {
        if (!f.mediaKey || f.rejected) continue; // rejected figures never need their image
        const w = wanted.get(f.mediaKey) ?? { key: f.mediaKey, md5: f.mediaMd5, article: line.article, figures: [] };
        w.figures.push(f.key);
        wanted.set(f.mediaKey, w);
      }
    }
    const result: FetchMediaResult = { wanted: wanted.size, fetched: 0, reused: 0, failed: 0 };
    const outputs: string[] = [];
    await mapLimit([...wanted.values()], CONCURRENCY, async (w) => {
      const file = mediaPath(unitDir, w.key);
      try {
        result[await downloadOnce(source, w, file)]++;
        outputs.push(file);
      } catch (err) {
        if (err instanceof TransientFetchError) throw err.cause;
        result.failed++;
        for (const figure of w.figures) {
          q.push(quarantine({ article: w.article, figure, stage: 'media', reason: err instanceof SourceError ? `image-${err.kind}` : 'image-error', detail: (err as Error).message }));
        }
      }
      heartbeat({ fetched: result.fetched + result.reused, of: wanted.size });
    });
    outputs.sort();
    return { result, outputs };
  });
}
