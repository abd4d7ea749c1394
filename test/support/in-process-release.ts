import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { annotateUnit, ensureAnnotationModels } from '../../activities/annotate/activity';
import { readJsonIfExists } from '../../activities/common/files';
import type { UnitTask } from '../../activities/common/stage';
import { enrichBatch } from '../../activities/enrich/activity';
import { fetchArticles, fetchFigureMedia } from '../../activities/fetch/activity';
import { prepareImages } from '../../activities/images/activity';
import { writeParquet } from '../../activities/parquet/activity';
import { parseArticles } from '../../activities/parse/activity';
import { planRelease } from '../../activities/plan/activity';
import { finalizeRelease, type ReleaseSummary } from '../../activities/publish/finalize';
import { writeShard } from '../../activities/shard/activity';
import { ensureSampleMirror, sampleEnrichmentArticles } from '../../cli/sample';
import { fixturePaths } from '../../config/paths';
import { ReleaseInputSchema, SUBSETS, type ReleaseInput } from '../../config/release';
import { startEutilsStandin } from '../../sample/eutils-standin';

export interface InProcessRelease {
  dataDir: string;
  release: ReleaseInput;
  root: string;
  summary: ReleaseSummary;
  /** Unit tasks in release order, with the PubMed batch count writeShard needs. */
  units: { task: UnitTask; pmidBatches: number }[];
  cleanup(): void;
}

/**
 * The sample release built from the real fixtures by calling the activities in the release workflow's order,
 * in this process and without Temporal (a few seconds instead of a dev server): the same outputs a release writes.
 */
export async function buildReleaseInProcess(
  opts: {
    releaseId?: string;
    dataDir?: string;
    maxArticles?: number;
    /** a folder of the real fixtures' XML (or links to some of them) in place of all of them */
    nxmlDir?: string;
    figures?: { graphicalAbstracts?: boolean };
  } = {},
): Promise<InProcessRelease> {
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-inproc-'));
  const mirror = await ensureSampleMirror(dataDir, { nxmlDir: opts.nxmlDir });
  // As the demo runs it: recorded responses, and records generated from each sample article's XML for the others.
  const eutils = await startEutilsStandin({
    fixturesDir: fixturePaths.entrez(),
    generated: await sampleEnrichmentArticles(mirror.outDir),
  });
  const savedUrl = process.env.NCBI_EUTILS_URL;
  const savedEmail = process.env.NCBI_EMAIL;
  process.env.NCBI_EUTILS_URL = eutils.baseUrl;
  process.env.NCBI_EMAIL = 'tests@localhost';
  try {
    const release = ReleaseInputSchema.parse({
      releaseId: opts.releaseId ?? 'inproc-sample',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: mirror.outDir },
      units: { maxArticles: opts.maxArticles ?? 4, maxImages: 10000 },
      entrez: { enabled: true, batchSize: 200 },
      ...(opts.figures ? { figures: opts.figures } : {}),
    });
    await ensureAnnotationModels(release);
    const plan = await planRelease(release);
    const units: InProcessRelease['units'] = [];
    for (const subset of SUBSETS) {
      for (let i = 0; i < plan.subsets[subset].units; i++) {
        const task: UnitTask = { release, unitId: `${subset}-${String(i).padStart(6, '0')}` };
        await fetchArticles(task);
        const parsed = await parseArticles(task);
        for (let b = 0; b < parsed.pmidBatches; b++) await withRetry(() => enrichBatch(task, b));
        await fetchFigureMedia(task);
        await prepareImages(task);
        await annotateUnit(task);
        await writeShard(task, parsed.pmidBatches);
        await writeParquet(task);
        units.push({ task, pmidBatches: parsed.pmidBatches });
      }
    }
    const summary = await finalizeRelease(release);
    const root = path.join(dataDir, 'releases', release.releaseId);
    return {
      dataDir,
      release,
      root,
      summary,
      units,
      cleanup: () => fs.rmSync(dataDir, { recursive: true, force: true }),
    };
  } finally {
    process.env.NCBI_EUTILS_URL = savedUrl;
    process.env.NCBI_EMAIL = savedEmail;
    if (savedUrl === undefined) delete process.env.NCBI_EUTILS_URL;
    if (savedEmail === undefined) delete process.env.NCBI_EMAIL;
    await eutils.close();
  }
}

/** The stand-in enforces NCBI's 3 requests/s (Temporal's queue rate does it in a release): wait and retry. */
async function withRetry<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 1100));
    }
  }
}

/** How the CPU path's activities are called: directly, or on a thread of the cpu pool (`inCpuThread`). */
export type CpuRunner = (
  name: 'parseArticles' | 'prepareImages' | 'writeShard' | 'writeParquet',
  args: unknown[],
) => Promise<unknown>;

export const inlineRunner: CpuRunner = (name, args) => {
  const fns = { parseArticles, prepareImages, writeShard, writeParquet } as Record<
    string,
    (...a: unknown[]) => Promise<unknown>
  >;
  return fns[name]!(...args);
};

/**
 * Runs the CPU path (parse, images, shard, parquet) of every unit of a built release again, `passes` times,
 * `concurrency` units at a time: their manifests go first, so each stage does its work again (fetch, media, enrich
 * and annotate stay). The passes follow one another unit by unit, with no barrier between passes, so the cores are
 * not left idle while a pass's last unit finishes. Returns the figures parsed.
 */
export async function rerunCpuPath(
  rel: InProcessRelease,
  run: CpuRunner,
  concurrency = 1,
  passes = 1,
): Promise<number> {
  const manifest = (u: string, s: string) => path.join(rel.root, 'units', u, 'manifests', `${s}.json`);
  const items = Array.from({ length: passes }, () => rel.units).flat();
  const previous = new Map<string, Promise<unknown>>();
  let figures = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const { task, pmidBatches } = items[next++]!;
        const done = (async () => {
          await previous.get(task.unitId); // one pass of a unit at a time
          // As on a first run, the stages find neither their manifests nor their outputs: files written anew, not
          // renamed over the last pass's (ext4 flushes a file renamed over another at once: auto_da_alloc).
          // Not with the *Sync calls: the benchmark's cpu processes would wait on this loop for their next task.
          for (const s of ['parse', 'images', 'shard', 'parquet']) {
            const done = await readJsonIfExists<{ outputs: { path: string }[] }>(manifest(task.unitId, s));
            await Promise.all((done?.outputs ?? []).map((o) => fsp.rm(path.join(rel.root, o.path), { force: true })));
            await fsp.rm(manifest(task.unitId, s), { force: true });
          }
          const parsed = (await run('parseArticles', [task])) as { figures: number };
          figures += parsed.figures;
          await run('prepareImages', [task]);
          await run('writeShard', [task, pmidBatches]);
          await run('writeParquet', [task]);
        })();
        previous.set(task.unitId, done);
        await done;
      }
    }),
  );
  return figures;
}
