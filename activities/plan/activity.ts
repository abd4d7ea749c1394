import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { ReleaseInput, Subset } from '../../config/release';
import { readJsonIfExists, sha256Hex, writeJsonAtomic } from '../common/files';
import { localDataDir, releaseTree } from '../common/sync';
import { ReleaseLayout } from '../common/layout';
import { cancellationSignal, heartbeat, layoutOf, withPulse } from '../common/stage';
import { downloadLimiter, fetchTuning, withRetries } from '../fetch/retry';
import { openSource, SourceError, type PmcSource } from '../fetch/source';
import { legacyPlanRows } from '../legacy/plan';
import { acquireLegacyTransport } from '../legacy/transport';
import {
  ArticleMetadataSchema,
  factsOf,
  latestInventoryManifest,
  readInventoryBatches,
  type Exclusion,
  type VersionFacts,
} from './plan';
import { StreamingPlanner, type PlanChanges, type PlannerResult, type PlanRow } from './planner';

/** Small enough for workflow history: counts and unit ids per subset, never the article lists. */
export interface PlanSummary {
  releaseId: string;
  /** The inventory manifest key (cloud) or the file list (legacy) the plan was made from. */
  inventoryManifest: string;
  inventoryRows: number;
  selectedArticles: number;
  excluded: Record<string, number>;
  subsets: Record<Subset, { units: number; articles: number; figureImages: number }>;
  planHash: string;
  /** Metadata JSONs read (one GET each); unchanged versions of an incremental plan and legacy rows need none. */
  metadataFetched: number;
  /** Against `previousRelease` (all versions are new without one). */
  changes: PlanChanges;
  /** Articles in `other` by exact license code: unknown codes are never silently merged. */
  otherLicenses: Record<string, number>;
}

function inputsHashOf(release: ReleaseInput): string {
  const inputs: Record<string, unknown> = {
    source: release.source,
    units: release.units,
    previousRelease: release.previousRelease ?? null,
  };
  return sha256Hex(JSON.stringify(inputs));
}

/** The facts of one metadata JSON; unreadable or inconsistent metadata is recorded, retryable failures throw. */
export async function resolveCloudFacts(source: PmcSource, row: PlanRow, signal?: AbortSignal): Promise<VersionFacts> {
  const unreadable = (reason: 'unreadable-metadata' | 'bad-metadata', detail: string): VersionFacts => ({
    key: row.key,
    pmcid: row.pmcid,
    version: row.version,
    etag: row.etag,
    oa: false,
    retracted: false,
    article: null,
    error: { reason, detail: detail.slice(0, 500) },
  });
  let facts: VersionFacts;
  try {
    const obj = await withRetries(() => downloadLimiter().run(() => source.get(row.key, { signal }), signal), {
      signal,
    });
    const meta = ArticleMetadataSchema.parse(JSON.parse(obj.body.toString('utf8')));
    facts = factsOf(row.key, row.etag, meta);
  } catch (err) {
    if (err instanceof SourceError && err.retryable) throw err; // the plan fails; its next attempt resumes from the facts written so far
    if (signal?.aborted) throw err;
    return unreadable('unreadable-metadata', (err as Error).message);
  }
  if (facts.pmcid !== row.pmcid || facts.version !== row.version) {
    return unreadable('bad-metadata', `${row.key} describes PMC${facts.pmcid}.${facts.version}`);
  }
  return facts;
}

async function previousOf(release: ReleaseInput): Promise<{ releaseId: string; factsDir: string } | null> {
  const prev = release.previousRelease;
  if (!prev) return null;
  if (prev === release.releaseId)
    throw ApplicationFailure.nonRetryable(`previousRelease is the release itself (${prev})`, 'BadPreviousRelease');
  const layout = new ReleaseLayout(localDataDir(release), prev);
  // With a store, the earlier release's plan is there (planned by an io worker on any host): pulled to this one.
  const files = releaseTree(release);
  if (files.remote && (await files.readJson<PlanSummary>(layout.planFile))) {
    await files.pullDir(path.join(layout.planDir, 'facts'));
    await files.pull(layout.planFile);
  }
  const plan = await readJsonIfExists<PlanSummary>(layout.planFile);
  if (!plan)
    throw ApplicationFailure.nonRetryable(
      `previous release ${prev} has no finished plan (${layout.planFile})`,
      'BadPreviousRelease',
    );
  const factsDir = path.join(layout.planDir, 'facts');
  if (
    !(await fs.stat(factsDir).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  ) {
    throw ApplicationFailure.nonRetryable(
      `previous release ${prev} was planned without facts (${factsDir}); plan it again or plan this one in full`,
      'BadPreviousRelease',
    );
  }
  return { releaseId: prev, factsDir };
}

export async function planRelease(release: ReleaseInput): Promise<PlanSummary> {
  const layout = layoutOf(release);
  const inputsHash = inputsHashOf(release);
  const files = releaseTree(release);
  // plan.json is written (and, with a store, committed) after every other file of the plan.
  const existing = await files.readJson<PlanSummary & { inputsHash: string }>(layout.planFile);
  if (existing && existing.inputsHash === inputsHash) {
    const { inputsHash: _ignored, ...summary } = existing;
    return summary;
  }
  const signal = cancellationSignal();
  const previous = await previousOf(release);
  // Metadata GETs and the legacy file list wait for the worker's shared download slots and FTP connections:
  // heartbeat the planner's latest details meanwhile, so a long wait is not taken for a dead worker.
  let last: Record<string, unknown> = { phase: 'planning' };
  const beat = (d: Record<string, unknown>) => heartbeat((last = d));
  const { result, listed } = await withPulse(
    () => last,
    () => runPlan(release, layout, previous, signal, { heartbeat: beat }),
  );
  const summary: PlanSummary = {
    releaseId: release.releaseId,
    inventoryManifest: listed,
    inventoryRows: result.rows,
    selectedArticles: result.selected,
    excluded: result.excluded,
    subsets: result.subsets,
    planHash: result.planHash,
    metadataFetched: result.resolved,
    changes: result.changes,
    otherLicenses: result.otherLicenses,
  };
  if (files.remote) {
    await fs.rm(layout.planFile, { force: true });
    let n = 0;
    await files.pushAll(await files.localFiles(layout.planDir), () => {
      if (++n % 100 === 0) heartbeat({ phase: 'committing the plan', files: n });
    });
  }
  await writeJsonAtomic(layout.planFile, { ...summary, inputsHash });
  await files.push(layout.planFile);
  return summary;
}

/** Plans a release into `layout` (plan/units, plan/facts, plan/excluded.ndjson) without writing plan.json. */
export async function runPlan(
  release: ReleaseInput,
  layout: ReleaseLayout,
  previous: { releaseId: string; factsDir: string } | null,
  signal?: AbortSignal,
  /** For benchmarks: another bucket reader, and facts supplied in-process in place of the metadata GETs (cloud sources only). */
  hooks: {
    source?: PmcSource;
    resolveSync?: (row: PlanRow) => VersionFacts;
    heartbeat?: (details: Record<string, unknown>) => void;
  } = {},
): Promise<{ result: PlannerResult; listed: string }> {
  const beat = hooks.heartbeat ?? heartbeat;
  const src = release.source;
  const unitFile = (unitId: string) => layout.unitFile(unitId);
  if (src.kind === 'pmc-legacy') {
    // The list has no figure counts: cap articles per unit so units.maxImages holds at the assumed density.
    const maxArticles = Math.max(
      1,
      Math.min(release.units.maxArticles, Math.floor(release.units.maxImages / src.assumedImagesPerArticle)),
    );
    const planner = new StreamingPlanner({
      planDir: layout.planDir,
      unitFile,
      limits: { maxArticles, maxImages: release.units.maxImages },
      previous,
      resolve: async (row) => {
        throw new Error(`legacy row ${row.key} carries no facts`);
      },
      concurrency: 1,
      heartbeat: beat,
    });
    const { transport, release: releaseTransport } = acquireLegacyTransport(src, fetchTuning().timeoutMs);
    try {
      await planner.start();
      for await (const batch of legacyPlanRows(transport, src.fileList, signal)) {
        for (const item of batch) {
          if ('exclusion' in item) planner.exclude(item.exclusion);
          else planner.addRow(item.row);
        }
        beat({ phase: 'list', rows: planner.rows });
      }
      return { result: await planner.finish(), listed: src.fileList };
    } catch (err) {
      await planner.abandon().catch(() => undefined);
      throw failureOf(err);
    } finally {
      await releaseTransport();
    }
  }

  const source = hooks.source ?? openSource(src, fetchTuning().timeoutMs);
  let manifestKey: string;
  try {
    manifestKey = await withRetries(() => latestInventoryManifest(source), { signal });
  } catch (err) {
    throw failureOf(err);
  }
  const planner = new StreamingPlanner({
    planDir: layout.planDir,
    unitFile,
    limits: release.units,
    previous,
    resolve: (row) => resolveCloudFacts(source, row, signal),
    resolveSync: hooks.resolveSync,
    concurrency: fetchTuning().planConcurrency,
    heartbeat: beat,
  });
  try {
    await planner.start();
    for await (const batch of readInventoryBatches(source, manifestKey, { signal })) {
      for (const r of batch) {
        const item = inventoryItemOf(r);
        if (item && 'row' in item) planner.addRow(item.row);
        else if (item) planner.exclude(item.exclusion);
      }
      beat({ phase: 'inventory', rows: planner.rows });
    }
    return { result: await planner.finish(), listed: manifestKey };
  } catch (err) {
    await planner.abandon().catch(() => undefined);
    throw failureOf(err);
  }
}

/**
 * One inventory row: a metadata JSON to plan, an exclusion when its ETag holds a tab, CR or newline (no plan line
 * can hold it; the row is recorded and the plan goes on), or null for any other object of the bucket.
 */
export function inventoryItemOf(r: { key: string; etag: string }): { row: PlanRow } | { exclusion: Exclusion } | null {
  const ids = metadataKeyIds(r.key);
  if (!ids) return null;
  if (/[\t\n\r]/.test(r.etag))
    return {
      exclusion: {
        key: r.key,
        pmcid: r.key.slice(9, ids.pmcidEnd),
        reason: 'bad-metadata',
        detail: `inventory ETag with a tab, CR or newline: ${JSON.stringify(r.etag)}`,
      },
    };
  return { row: { pmcid: ids.pmcid, version: ids.version, key: r.key, etag: r.etag, inline: null } };
}

/**
 * The match of /^metadata\/PMC(\d+)\.(\d+)\.json$/, read in place (no regex and no substrings per inventory row): the PMCID and version, and
 * where the PMCID's digits end; null when the key is not `metadata/PMC<digits>.<digits>.json`.
 */
function metadataKeyIds(key: string): { pmcid: number; version: number; pmcidEnd: number } | null {
  if (!key.startsWith('metadata/PMC')) return null;
  const pmcidEnd = digitsEnd(key, 12);
  if (pmcidEnd === 12 || key.charCodeAt(pmcidEnd) !== 46) return null;
  const versionEnd = digitsEnd(key, pmcidEnd + 1);
  if (versionEnd === pmcidEnd + 1 || versionEnd !== key.length - 5 || !key.endsWith('.json')) return null;
  return { pmcid: decimal(key, 12, pmcidEnd), version: decimal(key, pmcidEnd + 1, versionEnd), pmcidEnd };
}

function digitsEnd(s: string, i: number): number {
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
  }
  return i;
}

/** Number(s.slice(from, to)) for ASCII digits; computed in place when exact (15 digits or fewer). */
function decimal(s: string, from: number, to: number): number {
  if (to - from > 15) return Number(s.slice(from, to));
  let v = 0;
  for (let i = from; i < to; i++) v = v * 10 + (s.charCodeAt(i) - 48);
  return v;
}

/** A source that can never answer (404/403 on the inventory or list) fails the plan without retries. */
function failureOf(err: unknown): unknown {
  if (err instanceof SourceError && !err.retryable)
    return ApplicationFailure.nonRetryable(err.message, 'SourceUnavailable');
  return err;
}
