import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ReleaseInput } from '../../config/release';
import { articleKeyProblem, isMd5 } from '../common/keys';
import { exists, insideRoot, readNdjson, writeFileAtomic } from '../common/files';
import { quarantine, type QuarantineRecord } from '../common/quarantine';
import {
  cancellationSignal,
  heartbeat,
  mapLimit,
  runUnitStage,
  withPulse,
  type Staged,
  type UnitTask,
} from '../common/stage';
import { fetchLegacyArticle, LegacyPmcSource } from '../legacy/fetch';
import { acquireLegacyTransport, type LegacyTransport } from '../legacy/transport';
import type { ParsedArticleLine } from '../parse/activity';
import type { PlannedArticle, PlannedUnit } from '../plan/plan';
import { localDataDir } from '../common/sync';
import { md5File, ObjectCache } from './cache';
import { downloadLimiter, fetchTuning, withRetries } from './retry';
import { DirPmcSource, HttpPmcSource, SourceError, type PmcSource } from './source';

export interface FetchArticlesResult {
  articles: number;
  fetched: number;
  reused: number;
  failed: number;
  /** Placed from the content-addressed cache (<dataDir>/cache), without a download. */
  cached?: number;
}

export function articleXmlPath(unitDir: string, pmcid: string, version: number): string {
  return path.join(unitDir, 'articles', `${pmcid}.${version}.xml`);
}

/**
 * Where a figure's media file is staged: `media/<PMCID>.<ver>/<name>`. Keys are checked at planning
 * (activities/common/keys.ts); one that still escapes its folder (a plan written by hand or by older code) is an
 * `unsafe-key` SourceError, which the caller quarantines: never an error that retries.
 */
export function mediaPath(unitDir: string, mediaKey: string): string {
  try {
    return insideRoot(path.join(unitDir, 'media'), mediaKey);
  } catch (err) {
    throw new SourceError((err as Error).message, 'unsafe-key', false, mediaKey);
  }
}

/** A key or checksum no stage may act on: refused before any cache or path is touched. */
function refuseUnusable(obj: { key: string; md5: string | null }, owner: string | null): void {
  const problem = owner ? articleKeyProblem(obj.key, owner) : null;
  if (problem) throw new SourceError(problem.detail, 'unsafe-key', false, obj.key);
  if (obj.md5 !== null && !isMd5(obj.md5))
    throw new SourceError(
      `md5 ${JSON.stringify(obj.md5)} of ${obj.key} is not 32 hex digits`,
      'bad-md5',
      false,
      obj.key,
    );
}

/** The source a worker reads a release from, with the worker's timeout. */
export function sourceOf(release: ReleaseInput): PmcSource {
  const cfg = release.source;
  if (cfg.kind === 'pmc-cloud-http') return new HttpPmcSource(cfg.baseUrl, fetchTuning().timeoutMs);
  if (cfg.kind === 'pmc-cloud-dir') return new DirPmcSource(cfg.root);
  throw new Error(`source ${cfg.kind} is read through its package adapter, not by key`);
}

/** A file already in place counts only if its md5 is the one the metadata promised. */
async function intactCopy(file: string, md5: string | null): Promise<boolean> {
  if (!(await exists(file))) return false;
  return md5 === null ? true : (await md5File(file)) === md5.toLowerCase();
}

/** Streams an object into `file` through a temporary name; the rename happens only after the md5 checked out. */
async function downloadToFile(
  source: PmcSource,
  key: string,
  md5: string | null,
  file: string,
  signal?: AbortSignal,
): Promise<void> {
  if (!source.getStream) {
    const got = await source.get(key, { expectedMd5: md5, signal });
    await writeFileAtomic(file, got.body);
    return;
  }
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const body = await source.getStream(key, { expectedMd5: md5, signal });
    await pipeline(body, createWriteStream(tmp));
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

export type PlaceOutcome = 'fetched' | 'reused' | 'cached';

/**
 * Puts one object in place unless an intact copy is there: from the content-addressed cache when its md5 is known
 * and cached (so an unchanged object is never downloaded twice, across units and releases), else downloaded with
 * retries and backoff (timeouts, resets, 5xx, md5 mismatches) inside the worker's download bound. A failure that
 * outlasts the retries escapes: retryable ones as TransientFetchError (the activity fails, Temporal retries it),
 * permanent ones (404, 403, an md5 that never matches) as SourceError for the caller to quarantine.
 */
export async function placeObject(
  source: PmcSource,
  obj: { key: string; md5: string | null },
  file: string,
  opts: { cache?: ObjectCache | null; signal?: AbortSignal; owner?: string } = {},
): Promise<PlaceOutcome> {
  refuseUnusable(obj, opts.owner ?? null);
  if (await intactCopy(file, obj.md5)) return 'reused';
  if (obj.md5 && opts.cache && (await opts.cache.restore(obj.md5, file))) return 'cached';
  try {
    await withRetries(
      () => downloadLimiter().run(() => downloadToFile(source, obj.key, obj.md5, file, opts.signal), opts.signal),
      { signal: opts.signal },
    );
  } catch (err) {
    const permanent = err instanceof SourceError && (!err.retryable || err.kind === 'checksum');
    if (!permanent) throw new TransientFetchError(err as Error);
    throw err;
  }
  if (obj.md5 && opts.cache) await opts.cache.store(obj.md5, file);
  return 'fetched';
}

export class TransientFetchError extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}

function legacyContext(release: ReleaseInput, unitDir: string, transport: LegacyTransport) {
  const cfg = release.source;
  if (cfg.kind !== 'pmc-legacy') throw new Error('not a legacy source');
  return {
    transport,
    cache: new ObjectCache(localDataDir(release)),
    packageIndexDir: path.join(localDataDir(release), 'cache', 'packages'),
    unitDir,
    limits: { maxEntryBytes: cfg.maxEntryBytes, maxPackageBytes: cfg.maxPackageBytes },
    signal: cancellationSignal(),
  };
}

export async function fetchArticles(task: UnitTask): Promise<Staged<FetchArticlesResult>> {
  if (task.release.source.kind === 'pmc-legacy') return fetchLegacyArticles(task);
  return runUnitStage(task, 'fetch', async ({ layout, unit, quarantine: q }) => {
    const source = sourceOf(task.release);
    const cache = new ObjectCache(localDataDir(task.release));
    const signal = cancellationSignal();
    const unitDir = layout.unitDir(unit.unitId);
    const result: FetchArticlesResult = { articles: unit.articles.length, fetched: 0, reused: 0, failed: 0, cached: 0 };
    const outputs: string[] = [];
    const progress = () => ({
      fetched: result.fetched + result.reused + (result.cached ?? 0),
      of: unit.articles.length,
    });
    // Downloads wait in line for the worker's slots (shared by its activities): heartbeat while they wait.
    await withPulse(progress, () =>
      mapLimit(unit.articles, fetchTuning().perActivity, async (a) => {
        const file = articleXmlPath(unitDir, a.pmcid, a.version);
        try {
          const outcome = await placeObject(source, a.xml, file, { cache, signal, owner: `${a.pmcid}.${a.version}` });
          result[outcome] = (result[outcome] ?? 0) + 1;
          outputs.push(file);
        } catch (err) {
          if (err instanceof TransientFetchError) throw err.cause;
          result.failed++;
          q.push(
            quarantine({
              article: `${a.pmcid}.${a.version}`,
              stage: 'fetch',
              reason: err instanceof SourceError ? `xml-${err.kind}` : 'xml-error',
              detail: (err as Error).message,
            }),
          );
        }
        heartbeat(progress());
      }),
    );
    outputs.sort();
    return { result, outputs };
  });
}

/**
 * Legacy packages: each article's package is downloaded (or taken from the cache), stream-extracted and verified;
 * its nXML lands at `articles/<PMCID>.1.xml` and its images at `media/<PMCID>.1/<name>`, exactly where the cloud
 * path puts them. The list names no media, so this stage fills the unit's `media` (key and md5 of each image) in
 * plan/units/<unit>.json, which parse reads next; that file is one of the stage's outputs, so a re-plan that
 * rewrites it makes this stage run again (reusing every extracted file).
 */
async function fetchLegacyArticles(task: UnitTask): Promise<Staged<FetchArticlesResult>> {
  return runUnitStage(task, 'fetch', async ({ layout, unit, quarantine: q }) => {
    const cfg = task.release.source;
    if (cfg.kind !== 'pmc-legacy') throw new Error('unreachable');
    const { transport, release } = acquireLegacyTransport(cfg, fetchTuning().timeoutMs);
    const unitDir = layout.unitDir(unit.unitId);
    const ctx = legacyContext(task.release, unitDir, transport);
    const result: FetchArticlesResult = { articles: unit.articles.length, fetched: 0, reused: 0, failed: 0, cached: 0 };
    const outputs: string[] = [];
    const records = new Map<string, QuarantineRecord[]>();
    const updated: PlannedArticle[] = unit.articles.map((a) => ({ ...a }));
    const progress = () => ({
      fetched: result.fetched + result.reused + (result.cached ?? 0),
      of: unit.articles.length,
    });
    try {
      // The worker's FTP connections are shared by its activities: one may wait long in line for a connection, and
      // heartbeats meanwhile (its place in line is left at once if it is cancelled).
      await withPulse(progress, () =>
        mapLimit(updated, fetchTuning().perActivity, async (a) => {
          const article = `${a.pmcid}.${a.version}`;
          const recs: QuarantineRecord[] = [];
          records.set(article, recs);
          try {
            const { index, outcome } = await fetchLegacyArticle(ctx, a);
            a.media = index.images.map((m) => ({ key: `${article}/${m.name}`, md5: m.md5 }));
            for (const r of index.rejected)
              recs.push(
                quarantine({
                  article,
                  stage: 'fetch',
                  reason: `package-${r.reason}`,
                  detail: `${a.package?.path}: ${r.detail}`,
                }),
              );
            if (!index.xml) {
              result.failed++;
              recs.push(
                quarantine({
                  article,
                  stage: 'fetch',
                  reason: 'xml-not-in-package',
                  detail: `${a.package?.path} holds no .nxml member`,
                }),
              );
            } else {
              result[outcome] = (result[outcome] ?? 0) + 1;
              outputs.push(articleXmlPath(unitDir, a.pmcid, a.version));
            }
          } catch (err) {
            const permanent = err instanceof SourceError && (!err.retryable || err.kind === 'checksum');
            if (!permanent) throw err;
            result.failed++;
            a.media = [];
            recs.push(
              quarantine({
                article,
                stage: 'fetch',
                reason: `xml-${(err as SourceError).kind}`,
                detail: (err as Error).message,
              }),
            );
          }
          heartbeat(progress());
        }),
      );
    } finally {
      await release();
      await fs.rm(path.join(unitDir, '.staging'), { recursive: true, force: true }).catch(() => undefined);
    }
    // Quarantine in plan order, whatever order the downloads finished in.
    for (const a of updated) q.push(...(records.get(`${a.pmcid}.${a.version}`) ?? []));
    const unitFile = layout.unitFile(unit.unitId);
    const next: PlannedUnit = { ...unit, articles: updated };
    await writeFileAtomic(unitFile, JSON.stringify(next) + '\n');
    outputs.sort();
    outputs.push(unitFile);
    return { result, outputs };
  });
}

export interface FetchMediaResult {
  wanted: number;
  fetched: number;
  reused: number;
  failed: number;
  cached?: number;
}

/** Fetches only the media files that parse resolved for figures (never PDFs, text or supplements). */
export async function fetchFigureMedia(task: UnitTask): Promise<Staged<FetchMediaResult>> {
  return runUnitStage(task, 'media', async ({ layout, unit, quarantine: q }) => {
    const cfg = task.release.source;
    const unitDir = layout.unitDir(unit.unitId);
    const legacy = cfg.kind === 'pmc-legacy' ? acquireLegacyTransport(cfg, fetchTuning().timeoutMs) : null;
    const source =
      cfg.kind === 'pmc-legacy'
        ? new LegacyPmcSource(
            legacy!.transport,
            unit.articles,
            { maxEntryBytes: cfg.maxEntryBytes, maxPackageBytes: cfg.maxPackageBytes },
            path.join(unitDir, '.staging'),
          )
        : sourceOf(task.release);
    const cache = new ObjectCache(localDataDir(task.release));
    const signal = cancellationSignal();
    const parsed = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
    const wanted = new Map<string, { key: string; md5: string | null; article: string; figures: string[] }>();
    for (const line of parsed) {
      for (const f of line.figures) {
        if (!f.mediaKey || f.rejected) continue; // rejected figures never need their image
        // One entry per (article, key): a file is bound to the article that owns it, never shared across articles.
        const id = `${line.article}\u0000${f.mediaKey}`;
        const w = wanted.get(id) ?? { key: f.mediaKey, md5: f.mediaMd5, article: line.article, figures: [] };
        w.figures.push(f.key);
        wanted.set(id, w);
      }
    }
    const result: FetchMediaResult = { wanted: wanted.size, fetched: 0, reused: 0, failed: 0, cached: 0 };
    const outputs: string[] = [];
    const progress = () => ({ fetched: result.fetched + result.reused + (result.cached ?? 0), of: wanted.size });
    try {
      await withPulse(progress, () =>
        mapLimit([...wanted.values()], fetchTuning().perActivity, async (w) => {
          try {
            const file = mediaPath(unitDir, w.key);
            const outcome = await placeObject(source, w, file, { cache, signal, owner: w.article });
            result[outcome] = (result[outcome] ?? 0) + 1;
            outputs.push(file);
          } catch (err) {
            if (err instanceof TransientFetchError) throw err.cause;
            result.failed++;
            for (const figure of w.figures) {
              q.push(
                quarantine({
                  article: w.article,
                  figure,
                  stage: 'media',
                  reason: err instanceof SourceError ? `image-${err.kind}` : 'image-error',
                  detail: (err as Error).message,
                }),
              );
            }
          }
          heartbeat(progress());
        }),
      );
    } finally {
      if (legacy) {
        await legacy.release();
        await fs.rm(path.join(unitDir, '.staging'), { recursive: true, force: true }).catch(() => undefined);
      }
    }
    outputs.sort();
    return { result, outputs };
  });
}
