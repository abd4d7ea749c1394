/**
 * Activities of the taxonomy fit (workflows/taxonomy.ts) and the label import (cli/taxonomy.ts):
 *
 *   sampleTaxonomyEmbeddings (gpu)   a seeded sample of the release's embeddings: the ones annotateUnit stored
 *                                    (units/<unit>/embeddings.f32) when they come from the current model, else the
 *                                    sampled staged images are embedded now
 *   fitTaxonomyModel (cpu)           PCA + mini-batch k-means (fit.ts) -> the versioned artifact, labels empty
 *   buildTaxonomyReviewPack (cpu)    HTML gallery per cluster + the labels file to fill (review-pack.ts)
 *   importTaxonomyLabels             the filled file -> the next version (same geometry, new labels)
 *
 * Layout: <release>/taxonomy/<version>/sample.{f32,ndjson,json} and .../review-<version>/; the artifact goes to
 * <dataDir>/models/taxonomy-<version>.json unless `outPath` says otherwise. Versions are immutable: an existing
 * artifact is reused when it was made from the same inputs and refused otherwise.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import sharp from 'sharp';
import { z } from 'zod';
import { ReleaseInputSchema } from '../../config/release';
import {
  exists,
  insideRoot,
  ndjson,
  readJson,
  readNdjson,
  sha256Hex,
  writeFileAtomic,
  writeJsonAtomic,
} from '../common/files';
import { heartbeat, layoutOf } from '../common/stage';
import { guarded, releaseDataFile, releaseTree } from '../common/sync';
import type { ParsedArticleLine } from '../parse/activity';
import { stagedImagePath, type PreparedImage } from '../images/activity';
import { embedderFor } from './activity';
import { fitMiniBatchKMeans, fitPca, pcaTransform, type Matrix } from './fit';
import { renderCluster, renderIndex, type ReviewCluster } from './review-pack';
import {
  assignCluster,
  emptyClusterLabel,
  isLabelled,
  labelsTemplate,
  nextTaxonomyVersion,
  parseTaxonomyModel,
  TaxonomyModelSchema,
  validateFilledLabels,
  withLabels,
  type ClusterLabel,
  type TaxonomyModel,
} from './taxonomy';
import { bytesToRows, readRows, readUnitEmbeddingsMeta, rowsToBytes, unitEmbeddingPaths } from './unit-embeddings';

const VERSION = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, . _ - (max 64)');

export const FitTaxonomyInputSchema = z.object({
  /** The release whose units are sampled (its data dir, id and annotation model). */
  release: ReleaseInputSchema,
  /** The new taxonomy's version, e.g. "2026-k2000". */
  version: VERSION,
  /** k-means K (upstream 2000). */
  clusters: z.number().int().positive().default(2000),
  /** PCA components before k-means (upstream's code default 45; the paper says 25); 0 = cluster raw embeddings. */
  pcaComponents: z.number().int().nonnegative().default(45),
  /** Embeddings sampled across the release (uniformly, without replacement, by a seeded hash of the key). */
  maxSamples: z.number().int().positive().default(100_000),
  seed: z.number().int().nonnegative().default(0),
  kmeansBatchSize: z.number().int().positive().default(1024),
  kmeansMaxEpochs: z.number().positive().default(100),
  /** Figures shown per cluster in the review pack, and the thumbnails' longest side. */
  perCluster: z.number().int().positive().default(12),
  thumbSize: z.number().int().min(16).max(1024).default(160),
  /** Where the artifact goes (relative to the data dir); default models/taxonomy-<version>.json. */
  outPath: z.string().optional(),
});
export type FitTaxonomyInput = z.infer<typeof FitTaxonomyInputSchema>;
export type FitTaxonomyInputArgs = z.input<typeof FitTaxonomyInputSchema>;

export function parseFitInput(input: FitTaxonomyInputArgs): FitTaxonomyInput {
  const parsed = FitTaxonomyInputSchema.safeParse(input);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(
      `invalid taxonomy fit input: ${z.prettifyError(parsed.error)}`,
      'ConfigError',
    );
  return parsed.data;
}

function fitDirOf(input: FitTaxonomyInput): string {
  return path.join(layoutOf(input.release).root, 'taxonomy', input.version);
}

export function artifactPathOf(input: FitTaxonomyInput): string {
  return layoutOf(input.release).resolveData(input.outPath ?? `models/taxonomy-${input.version}.json`);
}

const SampleMetaSchema = z.object({
  releaseId: z.string(),
  seed: z.number().int(),
  maxSamples: z.number().int(),
  rows: z.number().int().nonnegative(),
  dim: z.number().int().positive(),
  modelSha256: z.string(),
  sha256: z.string(),
  fromStored: z.number().int().nonnegative(),
  embeddedNow: z.number().int().nonnegative(),
  units: z.number().int().nonnegative(),
});
export type SampleMeta = z.infer<typeof SampleMetaSchema>;

export interface SampleRow {
  key: string;
  unit: string;
  article: string;
}

/** A key's place in the seeded uniform order: the first 48 bits of sha256(seed:key). */
function sampleScore(seed: number, key: string): number {
  return Buffer.from(sha256Hex(`${seed}:${key}`).slice(0, 12), 'hex').readUIntBE(0, 6);
}

async function readSample(dir: string): Promise<{ meta: SampleMeta; rows: SampleRow[]; x: Matrix } | null> {
  const metaText = await fs.readFile(path.join(dir, 'sample.json'), 'utf8').catch(() => null);
  if (metaText === null) return null;
  const meta = SampleMetaSchema.safeParse(JSON.parse(metaText));
  if (!meta.success) return null;
  const bytes = await fs.readFile(path.join(dir, 'sample.f32')).catch(() => null);
  if (!bytes || bytes.length !== meta.data.rows * meta.data.dim * 4 || sha256Hex(bytes) !== meta.data.sha256)
    return null;
  const rows = await readNdjson<SampleRow>(path.join(dir, 'sample.ndjson'));
  if (rows.length !== meta.data.rows) return null;
  return { meta: meta.data, rows, x: { rows: meta.data.rows, cols: meta.data.dim, data: bytesToRows(bytes) } };
}

export interface SampleResult {
  sampleDir: string;
  samples: number;
  dim: number;
  units: number;
  fromStored: number;
  embeddedNow: number;
}

/**
 * A seeded, uniform sample (without replacement) of the release's figure embeddings, in the order of the seeded
 * hash: the same release and seed give the same sample whatever the unit order. Embeddings annotateUnit stored
 * with the current model are read back; other units' sampled images are embedded now (hence the gpu queue).
 */
export async function sampleTaxonomyEmbeddings(args: FitTaxonomyInputArgs): Promise<SampleResult> {
  const input = parseFitInput(args);
  const layout = layoutOf(input.release);
  const dir = fitDirOf(input);
  const files = releaseTree(input.release);
  const embedder = await embedderFor(await releaseDataFile(input.release, input.release.annotate.modelPath));
  await files.pullDir(dir);
  const done = await readSample(dir);
  if (
    done &&
    done.meta.seed === input.seed &&
    done.meta.maxSamples === input.maxSamples &&
    done.meta.modelSha256 === embedder.modelSha256
  ) {
    return {
      sampleDir: path.relative(layout.dataDir, dir),
      samples: done.meta.rows,
      dim: done.meta.dim,
      units: done.meta.units,
      fromStored: done.meta.fromStored,
      embeddedNow: done.meta.embeddedNow,
    };
  }
  const unitsRoot = path.join(layout.root, 'units');
  // With a store, the units are the plan's (their folders are in the store, not here).
  const unitIds = files.remote
    ? (await files.storedFiles(path.join(layout.planDir, 'units'))).map((f) => path.basename(f.file, '.json')).sort()
    : (await fs.readdir(unitsRoot).catch(() => [] as string[])).sort();
  const storedEmbeddingBytes = new Map<string, number>();
  type Candidate = { score: number; key: string; unit: string; article: string; index: number; stored: boolean };
  let pool: Candidate[] = [];
  const trim = () => {
    pool.sort((a, b) => a.score - b.score || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    pool = pool.slice(0, input.maxSamples);
  };
  let units = 0;
  for (const [u, unit] of unitIds.entries()) {
    const unitDir = layout.unitDir(unit);
    if (files.remote) {
      await files.pull(path.join(unitDir, 'images.ndjson'));
      await files.pull(unitEmbeddingPaths(unitDir).meta);
      const head = await guarded(() => files.store!.head(files.keyOf(unitEmbeddingPaths(unitDir).file)));
      if (head) storedEmbeddingBytes.set(unit, head.bytes);
    }
    const prepared = await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'));
    if (prepared.length === 0) continue;
    units++;
    const meta = await readUnitEmbeddingsMeta(unitDir);
    const size = files.remote
      ? storedEmbeddingBytes.get(unit)
      : (await fs.stat(unitEmbeddingPaths(unitDir).file).catch(() => null))?.size;
    const stored =
      !!meta &&
      meta.modelSha256 === embedder.modelSha256 &&
      meta.dim === embedder.dim &&
      meta.rows === prepared.length &&
      size === meta.rows * meta.dim * 4;
    const failed = new Set(stored ? meta.failed.map((f) => f.index) : []);
    prepared.forEach((p, index) => {
      if (!failed.has(index))
        pool.push({ score: sampleScore(input.seed, p.key), key: p.key, unit, article: p.article, index, stored });
    });
    if (pool.length > 2 * input.maxSamples) trim();
    heartbeat({ phase: 'scan', units: u + 1, of: unitIds.length });
  }
  trim();
  if (pool.length === 0)
    throw ApplicationFailure.nonRetryable(
      `release ${input.release.releaseId} has no annotated figures to sample under ${unitsRoot}`,
      'ConfigError',
    );

  const dim = embedder.dim;
  const vectors = new Map<Candidate, Float32Array>();
  let fromStored = 0;
  let embeddedNow = 0;
  const byUnit = new Map<string, Candidate[]>();
  for (const c of pool) {
    const list = byUnit.get(c.unit);
    if (list) list.push(c);
    else byUnit.set(c.unit, [c]);
  }
  for (const [unit, cands] of byUnit) {
    const unitDir = layout.unitDir(unit);
    const stored = cands.filter((c) => c.stored);
    if (stored.length) {
      if (files.remote) await files.pull(unitEmbeddingPaths(unitDir).file, storedEmbeddingBytes.get(unit));
      const rows = await readRows(
        unitEmbeddingPaths(unitDir).file,
        dim,
        stored.map((c) => c.index),
      );
      stored.forEach((c, i) => vectors.set(c, rows.slice(i * dim, (i + 1) * dim)));
      fromStored += stored.length;
    }
    const fresh = cands.filter((c) => !c.stored);
    // Only the sampled images of a unit without stored embeddings come to this host (a missing one is skipped).
    for (const c of fresh) await files.pull(stagedImagePath(unitDir, c.key));
    const batch = input.release.annotate.batchSize;
    const starts: number[] = [];
    for (let i = 0; i < fresh.length; i += batch) starts.push(i);
    const load = (i: number) =>
      Promise.all(
        fresh.slice(i, i + batch).map((c) => fs.readFile(stagedImagePath(unitDir, c.key)).catch((err: Error) => err)),
      );
    for await (const b of embedder.embedBatches(starts, load)) {
      b.embeddings.forEach((e, j) => {
        if (e && e.every(Number.isFinite)) vectors.set(fresh[b.item + j]!, e);
      });
      embeddedNow += b.embeddings.length;
      heartbeat({ phase: 'embed', embedded: embeddedNow });
    }
  }
  const chosen = pool.filter((c) => vectors.has(c) && vectors.get(c)!.every(Number.isFinite));
  const flat = new Float32Array(chosen.length * dim);
  chosen.forEach((c, i) => flat.set(vectors.get(c)!, i * dim));
  const bytes = rowsToBytes(flat);
  await writeFileAtomic(path.join(dir, 'sample.f32'), bytes);
  await writeFileAtomic(
    path.join(dir, 'sample.ndjson'),
    ndjson(chosen.map((c): SampleRow => ({ key: c.key, unit: c.unit, article: c.article }))),
  );
  const meta: SampleMeta = {
    releaseId: input.release.releaseId,
    seed: input.seed,
    maxSamples: input.maxSamples,
    rows: chosen.length,
    dim,
    modelSha256: embedder.modelSha256,
    sha256: sha256Hex(bytes),
    fromStored,
    embeddedNow,
    units,
  };
  await writeJsonAtomic(path.join(dir, 'sample.json'), meta);
  // sample.json last: it says the sample is whole.
  for (const name of ['sample.f32', 'sample.ndjson', 'sample.json']) await files.push(path.join(dir, name));
  return { sampleDir: path.relative(layout.dataDir, dir), samples: chosen.length, dim, units, fromStored, embeddedNow };
}

export interface FitResult {
  taxonomyPath: string;
  version: string;
  clusters: number;
  samples: number;
  pcaComponents: number;
  /** Share of the sample's variance the kept components explain. */
  explainedVariance: number;
  inertia: number;
  kmeansSteps: number;
  /** Centroids no sample row was assigned to in the final pass. */
  emptyClusters: number;
  reused: boolean;
}

function fitResultOf(model: TaxonomyModel, taxonomyPath: string, reused: boolean): FitResult {
  const fit = model.fit!;
  return {
    taxonomyPath,
    version: model.version,
    clusters: model.centroids.length,
    samples: fit.samples,
    pcaComponents: fit.pcaComponents,
    explainedVariance: (model.pca?.explainedVarianceRatio ?? []).reduce((a, b) => a + b, model.pca ? 0 : 1),
    inertia: fit.inertia,
    kmeansSteps: fit.kmeansSteps,
    emptyClusters: fit.sizes.filter((s) => s === 0).length,
    reused,
  };
}

/** PCA + mini-batch k-means on the sample, seeded; writes the artifact (labels empty until experts fill them). */
export async function fitTaxonomyModel(args: FitTaxonomyInputArgs): Promise<FitResult> {
  const input = parseFitInput(args);
  const layout = layoutOf(input.release);
  const dir = fitDirOf(input);
  const files = releaseTree(input.release);
  await files.pullDir(dir);
  const sample = await readSample(dir);
  if (!sample) throw new Error(`no complete sample in ${dir}; run sampleTaxonomyEmbeddings first`);
  const out = artifactPathOf(input);
  if (!input.outPath || !path.isAbsolute(input.outPath)) await files.pull(out);
  // With a store, the artifact is named by its key (the review pack may run on another host).
  const shownPath = files.remote && !path.relative(files.localDir, out).startsWith('..') ? files.keyOf(out) : out;
  const sampleDir = path.relative(layout.dataDir, dir);
  const pcaComponents = Math.min(input.pcaComponents, sample.x.cols);
  const createdFrom = `fit:release=${input.release.releaseId};samples=${sample.meta.rows};sample=${sample.meta.sha256.slice(0, 16)};seed=${input.seed};pca=${pcaComponents};k=${input.clusters};batch=${input.kmeansBatchSize};epochs=${input.kmeansMaxEpochs};model=${sample.meta.modelSha256.slice(0, 16)}`;

  if (await exists(out)) {
    const existing = parseTaxonomyModel(await readJson(out));
    if (existing.version === input.version && existing.createdFrom === createdFrom && existing.fit)
      return fitResultOf(existing, shownPath, true);
    throw ApplicationFailure.nonRetryable(
      `${out} already holds taxonomy ${existing.version} (${existing.createdFrom}); versions are immutable: choose a new version`,
      'ConfigError',
    );
  }
  if (sample.meta.rows < input.clusters) {
    throw ApplicationFailure.nonRetryable(
      `${sample.meta.rows} sampled embeddings cannot make ${input.clusters} clusters`,
      'ConfigError',
    );
  }
  const progress = (phase: string, done: number, of: number) => heartbeat({ phase, done, of });
  const pca = pcaComponents > 0 ? fitPca(sample.x, pcaComponents, progress) : null;
  const y = pca
    ? pcaTransform(pca, sample.x)
    : { rows: sample.x.rows, cols: sample.x.cols, data: Float64Array.from(sample.x.data) };
  const km = fitMiniBatchKMeans(y, {
    k: input.clusters,
    seed: input.seed,
    batchSize: input.kmeansBatchSize,
    maxEpochs: input.kmeansMaxEpochs,
    onProgress: progress,
  });
  const labels: Record<string, ClusterLabel> = {};
  for (let c = 0; c < input.clusters; c++) labels[String(c)] = emptyClusterLabel();
  const model = TaxonomyModelSchema.parse({
    version: input.version,
    embeddingDim: sample.x.cols,
    pca,
    centroids: km.centroids,
    clusterIds: km.centroids.map((_, c) => c),
    labels,
    createdFrom,
    fit: {
      releaseId: input.release.releaseId,
      sampleDir,
      samples: sample.meta.rows,
      sampleSha256: sample.meta.sha256,
      modelSha256: sample.meta.modelSha256,
      seed: input.seed,
      pcaComponents,
      clusters: input.clusters,
      kmeansSteps: km.steps,
      inertia: km.inertia,
      sizes: km.sizes,
    },
  });
  await writeJsonAtomic(out, model);
  if (!input.outPath || !path.isAbsolute(input.outPath)) await files.push(out);
  return fitResultOf(model, shownPath, false);
}

export const ReviewPackInputSchema = z.object({
  dataDir: z.string().min(1),
  /** The release's store, when it has one: the artifact, the sample and the figures are pulled from it, the pack committed to it. */
  store: z.string().optional(),
  /** The artifact to review (relative to the data dir or absolute); it must carry `fit` (fitted, or imported from a fit). */
  taxonomyPath: z.string().min(1),
  perCluster: z.number().int().positive().default(12),
  thumbSize: z.number().int().min(16).max(1024).default(160),
  /** Default: <sampleDir>/review-<version>. */
  outDir: z.string().optional(),
});
export type ReviewPackInputArgs = z.input<typeof ReviewPackInputSchema>;

export interface ReviewPackResult {
  dir: string;
  index: string;
  labelsFile: string;
  clusters: number;
  figures: number;
  thumbnails: number;
}

/**
 * The expert review pack for an artifact: assigns the fit's sample to the artifact's centroids, shows the
 * `perCluster` figures nearest to each centroid (thumbnail + caption), and writes labels-to-fill.json (the current
 * labels when the artifact has them, else empty values).
 */
export async function buildTaxonomyReviewPack(args: ReviewPackInputArgs): Promise<ReviewPackResult> {
  const parsed = ReviewPackInputSchema.safeParse(args);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(`invalid review pack input: ${z.prettifyError(parsed.error)}`, 'ConfigError');
  const files = releaseTree({ dataDir: parsed.data.dataDir, store: parsed.data.store });
  const input = { ...parsed.data, dataDir: files.localDir };
  const resolve = (p: string) => (path.isAbsolute(p) ? p : path.join(input.dataDir, p));
  const inLocal = (p: string) => !path.relative(files.localDir, p).startsWith('..');
  if (inLocal(resolve(input.taxonomyPath))) await files.pull(resolve(input.taxonomyPath));
  const model = parseTaxonomyModel(await readJson(resolve(input.taxonomyPath)));
  if (!model.fit)
    throw ApplicationFailure.nonRetryable(
      `taxonomy ${model.version} has no fit provenance (a bootstrap taxonomy has no sample to review)`,
      'ConfigError',
    );
  const sampleDir = insideRoot(input.dataDir, model.fit.sampleDir);
  await files.pullDir(sampleDir);
  const sample = await readSample(sampleDir);
  if (!sample) throw new Error(`the sample of taxonomy ${model.version} is missing or damaged in ${sampleDir}`);
  const releaseRoot = path.resolve(sampleDir, '..', '..'); // <release>/taxonomy/<fit version>
  const outDir = input.outDir ? resolve(input.outDir) : path.join(sampleDir, `review-${model.version}`);

  const dim = sample.x.cols;
  const members = new Map<number, Array<{ row: number; distance: number }>>();
  for (const id of model.clusterIds) members.set(id, []);
  for (let r = 0; r < sample.x.rows; r++) {
    const { clusterId, distance } = assignCluster(
      model,
      sample.x.data.subarray(r * dim, (r + 1) * dim) as Float32Array,
    );
    members.get(clusterId)!.push({ row: r, distance });
  }
  const shown = new Map<number, Array<{ row: number; distance: number }>>();
  for (const [id, list] of members) {
    list.sort((a, b) => a.distance - b.distance || (sample.rows[a.row]!.key < sample.rows[b.row]!.key ? -1 : 1));
    shown.set(id, list.slice(0, input.perCluster));
  }
  // Captions from the units' parsed articles, only for the units whose figures are shown.
  const needed = new Set([...shown.values()].flat().map((m) => sample.rows[m.row]!.unit));
  const captions = new Map<string, string>();
  for (const unit of needed) {
    await files.pull(path.join(releaseRoot, 'units', unit, 'articles.ndjson'));
    const lines = await readNdjson<ParsedArticleLine>(path.join(releaseRoot, 'units', unit, 'articles.ndjson'));
    for (const line of lines) for (const f of line.figures) captions.set(f.key, f.caption);
  }
  // Rebuilt in place (pages and thumbnails are overwritten); a labels file already there is never touched: it may
  // hold an expert's work in progress.
  await fs.mkdir(path.join(outDir, 'thumbs'), { recursive: true });
  await fs.mkdir(path.join(outDir, 'clusters'), { recursive: true });
  let thumbnails = 0;
  const clusters: ReviewCluster[] = [];
  const ids = [...model.clusterIds].sort((a, b) => a - b);
  for (const [n, id] of ids.entries()) {
    const figures: ReviewCluster['figures'] = [];
    for (const m of shown.get(id)!) {
      const row = sample.rows[m.row]!;
      const thumb = `thumbs/${row.key}.jpg`;
      const source = stagedImagePath(path.join(releaseRoot, 'units', row.unit), row.key);
      await files.pull(source).catch(() => false);
      const ok = await sharp(source, { failOn: 'error' })
        .resize(input.thumbSize, input.thumbSize, { fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' })
        .jpeg({ quality: 70 })
        .toFile(insideRoot(outDir, thumb))
        .then(
          () => true,
          () => false,
        );
      if (ok) thumbnails++;
      figures.push({
        key: row.key,
        caption: captions.get(row.key) ?? '',
        thumb: ok ? thumb : null,
        distance: m.distance,
      });
    }
    const labels = model.labels[String(id)] ?? null;
    clusters.push({ clusterId: id, members: members.get(id)!.length, figures, labels });
    if (n % 32 === 0) heartbeat({ phase: 'review-pack', clusters: n, of: ids.length });
  }
  for (const [n, c] of clusters.entries()) {
    const nav = {
      prev: n > 0 ? clusters[n - 1]!.clusterId : null,
      next: n + 1 < clusters.length ? clusters[n + 1]!.clusterId : null,
    };
    await fs.writeFile(path.join(outDir, 'clusters', `${c.clusterId}.html`), renderCluster(model, c, nav));
  }
  const labelsFile = 'labels-to-fill.json';
  const template = isLabelled(model)
    ? Object.fromEntries(ids.map((id) => [String(id), model.labels[String(id)]!]))
    : labelsTemplate(model);
  if (inLocal(outDir)) await files.pull(path.join(outDir, labelsFile));
  if (!(await exists(path.join(outDir, labelsFile)))) await writeJsonAtomic(path.join(outDir, labelsFile), template);
  const index = path.join(outDir, 'index.html');
  await writeFileAtomic(index, renderIndex(model, clusters, { samples: sample.x.rows, labelsFile }));
  // With a store, the pack goes there for the experts (index.html last).
  if (inLocal(outDir)) {
    await files.pushAll((await files.localFiles(outDir)).filter((f) => f !== index));
    await files.push(index);
  }
  return {
    dir: outDir,
    index,
    labelsFile: path.join(outDir, labelsFile),
    clusters: clusters.length,
    figures: clusters.reduce((a, c) => a + c.figures.length, 0),
    thumbnails,
  };
}

export interface ImportLabelsOptions {
  /** The artifact the labels were filled for. */
  taxonomyPath: string;
  /** The filled labels file (cluster_labels.json format). */
  labelsPath: string;
  /** Default: the next revision of the artifact's version ("v" -> "v-r1" -> "v-r2"). */
  version?: string;
  /** Default: taxonomy-<version>.json next to the artifact. */
  outPath?: string;
}

export interface ImportLabelsResult {
  taxonomyPath: string;
  version: string;
  parent: string;
  clusters: number;
  reused: boolean;
}

/** The filled labels file -> the next taxonomy version: same PCA, centroids and cluster ids; the new labels. */
export async function importTaxonomyLabels(opts: ImportLabelsOptions): Promise<ImportLabelsResult> {
  const model = parseTaxonomyModel(await readJson(opts.taxonomyPath));
  const text = await fs.readFile(opts.labelsPath, 'utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${opts.labelsPath} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const labels = validateFilledLabels(model, value);
  const version = opts.version ?? nextTaxonomyVersion(model.version);
  VERSION.parse(version);
  const next = withLabels(model, labels, {
    version,
    labelsSha256: sha256Hex(text),
    source: path.basename(opts.labelsPath),
  });
  const out = opts.outPath ?? path.join(path.dirname(opts.taxonomyPath), `taxonomy-${version}.json`);
  if (await exists(out)) {
    const existing = parseTaxonomyModel(await readJson(out));
    if (
      existing.version === next.version &&
      existing.labelsSha256 === next.labelsSha256 &&
      existing.parent === next.parent
    ) {
      return { taxonomyPath: out, version, parent: model.version, clusters: next.centroids.length, reused: true };
    }
    throw new Error(
      `${out} already holds taxonomy ${existing.version}; versions are immutable: pass another --version`,
    );
  }
  await writeJsonAtomic(out, next);
  return { taxonomyPath: out, version, parent: model.version, clusters: next.centroids.length, reused: false };
}
