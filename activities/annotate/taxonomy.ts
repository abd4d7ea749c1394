/**
 * Taxonomy artifact and nearest-centroid cluster assignment.
 *
 * Upstream (docs/annotation.md) labels an image by kmeans.predict(pca.transform(dinov2_cls)) with
 * K = 2000, then copies panel_type/panel_subtype/global_class/local_class verbatim from
 * cluster_labels.json[cluster]. The fitted pca_2000/kmeans_2000 models are not published, so the
 * artifact here carries its own centroids (in PCA space when `pca` is set) plus the cluster id each
 * centroid stands for, and the label rows it needs, making it self-contained and versionable.
 */
import * as fs from 'node:fs/promises';
import { z } from 'zod';
import { mulberry32 } from './tiny-vit';

export const ClusterLabelSchema = z.object({
  panel_type: z.string(),
  panel_subtype: z.string(),
  global_class: z.array(z.string()),
  local_class: z.array(z.string()),
});
export type ClusterLabel = z.infer<typeof ClusterLabelSchema>;

/** cluster_labels.json: keys are non-negative integer strings ("0".."1999" upstream). */
export const ClusterLabelsSchema = z.record(
  z.string().regex(/^(0|[1-9]\d*)$/, 'cluster id must be an integer string'),
  ClusterLabelSchema,
);
export type ClusterLabels = z.infer<typeof ClusterLabelsSchema>;

const finite = z.number().refine(Number.isFinite, 'must be finite');

/** Where a fitted artifact came from (taxonomy-activity.ts); carried unchanged into label-import versions. */
export const TaxonomyFitInfoSchema = z.object({
  releaseId: z.string(),
  /** The sample's folder, relative to the data dir: sample.f32 (rows), sample.ndjson (keys), sample.json. */
  sampleDir: z.string(),
  samples: z.number().int().nonnegative(),
  sampleSha256: z.string(),
  modelSha256: z.string(),
  seed: z.number().int(),
  pcaComponents: z.number().int().nonnegative(),
  clusters: z.number().int().positive(),
  kmeansSteps: z.number().int().nonnegative(),
  /** Sum of squared distances of the sample to its centroid, in the centroid space. */
  inertia: z.number(),
  /** Sample rows per centroid (index-aligned with centroids). */
  sizes: z.array(z.number().int().nonnegative()),
});
export type TaxonomyFitInfo = z.infer<typeof TaxonomyFitInfoSchema>;

export const TaxonomyModelSchema = z
  .object({
    version: z.string().min(1),
    /** Width of the raw embedding fed to assignCluster (before PCA). */
    embeddingDim: z.number().int().positive(),
    /** y = components · (x - mean); components is [k][embeddingDim]. null = centroids live in embedding space. */
    pca: z
      .object({
        mean: z.array(finite),
        components: z.array(z.array(finite)).min(1),
        explainedVariance: z.array(finite).optional(),
        explainedVarianceRatio: z.array(finite).optional(),
      })
      .nullable(),
    centroids: z.array(z.array(finite)).min(1),
    /** The cluster id (key into labels) of each centroid, index-aligned with centroids. */
    clusterIds: z.array(z.number().int().nonnegative()),
    labels: z.record(z.string(), ClusterLabelSchema),
    /** Provenance, e.g. "bootstrap:seed=1" or the fitting run that produced the centroids. */
    createdFrom: z.string(),
    /** The version this one was derived from (a label import keeps the geometry and replaces the labels). */
    parent: z.string().optional(),
    /** sha256 of the expert labels file imported into this version. */
    labelsSha256: z.string().optional(),
    /** Fitting provenance of the geometry (absent for the bootstrap taxonomy). */
    fit: TaxonomyFitInfoSchema.optional(),
  })
  .superRefine((m, ctx) => {
    const issue = (message: string) => ctx.addIssue({ code: 'custom', message });
    const space = m.pca ? m.pca.components.length : m.embeddingDim;
    if (m.pca) {
      if (m.pca.mean.length !== m.embeddingDim)
        issue(`pca.mean has ${m.pca.mean.length} values, expected ${m.embeddingDim}`);
      if (m.pca.components.some((c) => c.length !== m.embeddingDim))
        issue(`every pca component must have ${m.embeddingDim} values`);
    }
    if (m.centroids.some((c) => c.length !== space)) issue(`every centroid must have ${space} values`);
    if (m.clusterIds.length !== m.centroids.length)
      issue(`${m.clusterIds.length} clusterIds for ${m.centroids.length} centroids`);
    if (new Set(m.clusterIds).size !== m.clusterIds.length) issue('clusterIds must be distinct');
    const missing = m.clusterIds.filter((id) => !(String(id) in m.labels));
    if (missing.length) issue(`no labels for cluster ids ${missing.slice(0, 5).join(', ')}`);
  });
export type TaxonomyModel = z.infer<typeof TaxonomyModelSchema>;

/** Read and validate cluster_labels.json (read in place; never copied). */
export async function loadClusterLabels(path: string): Promise<ClusterLabels> {
  const text = await fs.readFile(path, 'utf8');
  const parsed = ClusterLabelsSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`invalid cluster labels ${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Validate an untrusted taxonomy artifact (e.g. JSON from disk or a workflow input). */
export function parseTaxonomyModel(value: unknown): TaxonomyModel {
  const parsed = TaxonomyModelSchema.safeParse(value);
  if (!parsed.success) throw new Error(`invalid taxonomy model: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export interface BootstrapTaxonomyOptions {
  clusterLabels: ClusterLabels;
  embeddingDim: number;
  /** Number of centroids (default 32); at most the number of labelled clusters. */
  clusters?: number;
  seed?: number;
  version?: string;
}

/**
 * A placeholder taxonomy until one is fitted on real embeddings: `clusters` seeded random unit
 * vectors (no PCA), each standing for an evenly spaced cluster id of the labels file. Assignments
 * are deterministic and exercise the full labelling path, but they carry no semantic meaning;
 * matching upstream's image_label_id needs the original pca_2000/kmeans_2000 (etl doc §8, §11).
 */
export function buildBootstrapTaxonomy(opts: BootstrapTaxonomyOptions): TaxonomyModel {
  const clusters = opts.clusters ?? 32;
  const seed = opts.seed ?? 1;
  const ids = Object.keys(opts.clusterLabels)
    .map(Number)
    .sort((a, b) => a - b);
  if (!Number.isInteger(opts.embeddingDim) || opts.embeddingDim <= 0)
    throw new Error(`bad embeddingDim ${opts.embeddingDim}`);
  if (!Number.isInteger(clusters) || clusters <= 0 || clusters > ids.length) {
    throw new Error(`bootstrap taxonomy: clusters must be 1..${ids.length}, got ${clusters}`);
  }
  const rand = mulberry32(seed);
  const centroids: number[][] = [];
  const clusterIds: number[] = [];
  const labels: Record<string, ClusterLabel> = {};
  for (let i = 0; i < clusters; i++) {
    // Zero-mean uniform components, normalised: direction only, like the unit-norm tiny-vit output.
    const v = Array.from({ length: opts.embeddingDim }, () => rand() * 2 - 1);
    const norm = Math.hypot(...v) || 1;
    centroids.push(v.map((x) => x / norm));
    const id = ids[Math.floor((i * ids.length) / clusters)];
    clusterIds.push(id);
    labels[String(id)] = opts.clusterLabels[String(id)];
  }
  return TaxonomyModelSchema.parse({
    version: opts.version ?? `bootstrap-${clusters}-seed${seed}`,
    embeddingDim: opts.embeddingDim,
    pca: null,
    centroids,
    clusterIds,
    labels,
    createdFrom: `bootstrap:seed=${seed};clusters=${clusters};labels=${ids.length}`,
  });
}

/** Project into the centroid space: PCA when the model has one, else the embedding itself. */
function project(model: TaxonomyModel, embedding: Float32Array): Float64Array {
  if (embedding.length !== model.embeddingDim) {
    throw new Error(
      `embedding has ${embedding.length} values, taxonomy ${model.version} expects ${model.embeddingDim}`,
    );
  }
  if (!model.pca) return Float64Array.from(embedding);
  const { mean, components } = model.pca;
  const out = new Float64Array(components.length);
  for (let k = 0; k < components.length; k++) {
    const row = components[k];
    let s = 0;
    for (let j = 0; j < row.length; j++) s += row[j] * (embedding[j] - mean[j]);
    out[k] = s;
  }
  return out;
}

/**
 * Nearest centroid by squared Euclidean distance (as sklearn KMeans.predict), ties to the lowest index.
 * `distance` is the Euclidean distance (sqrt of the squared one) in the centroid space.
 */
export function assignCluster(model: TaxonomyModel, embedding: Float32Array): { clusterId: number; distance: number } {
  const y = project(model, embedding);
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < model.centroids.length; c++) {
    const centroid = model.centroids[c];
    let d = 0;
    for (let j = 0; j < y.length; j++) {
      const diff = y[j] - centroid[j];
      d += diff * diff;
    }
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (!Number.isFinite(bestD)) throw new Error('assignCluster: embedding is not finite');
  return { clusterId: model.clusterIds[best], distance: Math.sqrt(bestD) };
}

/** The expert labels of a cluster, copied verbatim upstream; throws for an id the artifact does not label. */
export function labelFor(model: TaxonomyModel, clusterId: number): ClusterLabel {
  const label = model.labels[String(clusterId)];
  if (!label) throw new Error(`taxonomy ${model.version} has no labels for cluster ${clusterId}`);
  return label;
}

/** The labels of a cluster nobody has labelled yet (a freshly fitted taxonomy): empty values in the published fields. */
export function emptyClusterLabel(): ClusterLabel {
  return { panel_type: '', panel_subtype: '', global_class: [], local_class: [] };
}

/** True when every cluster of the artifact carries expert labels (not the empty placeholder). */
export function isLabelled(model: TaxonomyModel): boolean {
  return model.clusterIds.every((id) => {
    const l = model.labels[String(id)];
    return !!l && l.panel_type !== '' && l.global_class.length > 0;
  });
}

/** The file the experts fill: cluster_labels.json's format, one key per cluster id ("0".."K-1"), empty values. */
export function labelsTemplate(model: TaxonomyModel): Record<string, ClusterLabel> {
  const out: Record<string, ClusterLabel> = {};
  for (const id of [...model.clusterIds].sort((a, b) => a - b)) out[String(id)] = emptyClusterLabel();
  return out;
}

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/**
 * One filled cluster: the values cluster_labels.json uses (panel_type single|multiple, a panel_subtype, 1+ global
 * and 1+ local classes; upstream has 1-3 and 1-4). Unknown fields are refused, to catch typos in field names.
 */
export const FilledClusterLabelSchema = z
  .object({
    panel_type: z.enum(['single', 'multiple']),
    panel_subtype: nonEmpty,
    global_class: z.array(nonEmpty).min(1, 'needs at least one global class'),
    local_class: z.array(nonEmpty).min(1, 'needs at least one local class'),
  })
  .strict();

/**
 * Validate an expert-filled labels file against the artifact it labels: exactly one entry per cluster id, each
 * complete. Every problem is reported at once, with its cluster id.
 */
export function validateFilledLabels(model: TaxonomyModel, value: unknown): ClusterLabels {
  const problems: string[] = [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push('the file must hold one object keyed by cluster id');
  } else {
    const expected = new Set(model.clusterIds.map(String));
    const keys = Object.keys(value);
    const missing = [...expected].filter((k) => !keys.includes(k));
    const extra = keys.filter((k) => !expected.has(k));
    if (missing.length)
      problems.push(
        `${missing.length} clusters missing: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`,
      );
    if (extra.length)
      problems.push(
        `clusters not in taxonomy ${model.version}: ${extra.slice(0, 10).join(', ')}${extra.length > 10 ? ', ...' : ''}`,
      );
    for (const k of keys.filter((key) => expected.has(key))) {
      const parsed = FilledClusterLabelSchema.safeParse((value as Record<string, unknown>)[k]);
      if (!parsed.success) {
        for (const issue of parsed.error.issues)
          problems.push(`cluster "${k}"${issue.path.length ? ` ${issue.path.join('.')}` : ''}: ${issue.message}`);
      }
    }
  }
  if (problems.length)
    throw new Error(
      `invalid labels for taxonomy ${model.version} (${problems.length} problems):\n  ${problems.slice(0, 50).join('\n  ')}${problems.length > 50 ? '\n  ...' : ''}`,
    );
  return value as ClusterLabels;
}

/** The next version string: "<v>-r1", then "-r2"...: a label import never reuses its parent's version. */
export function nextTaxonomyVersion(version: string): string {
  const m = /^(.*)-r(\d+)$/.exec(version);
  return m ? `${m[1]}-r${Number(m[2]) + 1}` : `${version}-r1`;
}

/** A new version with the same geometry (PCA, centroids, cluster ids) and the given labels. */
export function withLabels(
  model: TaxonomyModel,
  labels: ClusterLabels,
  opts: { version: string; labelsSha256: string; source: string },
): TaxonomyModel {
  if (opts.version === model.version) throw new Error(`the new version must differ from ${model.version}`);
  const ordered: Record<string, ClusterLabel> = {};
  for (const id of [...model.clusterIds].sort((a, b) => a - b)) ordered[String(id)] = labels[String(id)]!;
  return TaxonomyModelSchema.parse({
    ...model,
    version: opts.version,
    labels: ordered,
    parent: model.version,
    labelsSha256: opts.labelsSha256,
    createdFrom: `${model.createdFrom};labels=${opts.source} sha256=${opts.labelsSha256} onto ${model.version}`,
  });
}
