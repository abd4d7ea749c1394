import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { fixturePaths } from '../../config/paths';
import { readWorkerEnv, type ReleaseInput } from '../../config/release';
import { exists, ndjson, readJson, readNdjson, sha256Hex, writeFileAtomic, writeJsonAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { heartbeat, layoutOf, runUnitStage, type UnitTask } from '../common/stage';
import { stagedImagePath, type PreparedImage } from '../images/activity';
import { createEmbedder, type Embedder } from './embedder';
import { assignCluster, buildBootstrapTaxonomy, loadClusterLabels, parseTaxonomyModel, type TaxonomyModel } from './taxonomy';
import { buildTinyVitModel } from './tiny-vit';

/** The figure's place in the taxonomy: its cluster and that cluster's expert labels. */
export interface FigureLabel {
  key: string;
  clusterId: number;
  distance: number;
}

export interface AnnotationModels {
  modelPath: string;
  modelSha256: string;
  taxonomyPath: string;
  taxonomyVersion: string;
  generated: boolean;
}

export interface AnnotateResult {
  images: number;
  labelled: number;
  failed: number;
  provider: string;
  taxonomyVersion: string;
}

const GENERATED_MODEL = /(^|\/)tiny-vit-seed(\d+)\.onnx$/;

/**
 * Makes sure the embedding model and the taxonomy exist. The sample's small ViT-shaped model and bootstrap
 * taxonomy are generated deterministically; any other model must be supplied by the operator.
 */
export async function ensureAnnotationModels(release: ReleaseInput): Promise<AnnotationModels> {
  const layout = layoutOf(release);
  const modelPath = layout.resolveData(release.annotate.modelPath);
  const taxonomyPath = layout.resolveData(release.annotate.taxonomyPath);
  let generated = false;
  if (!(await exists(modelPath))) {
    const m = GENERATED_MODEL.exec(release.annotate.modelPath);
    if (!m) throw ApplicationFailure.nonRetryable(`embedding model ${modelPath} not found; export one as docs/annotation.md shows`, 'ModelMissing');
    await writeFileAtomic(modelPath, buildTinyVitModel({ seed: Number(m[2]) }));
    generated = true;
  }
  if (!(await exists(taxonomyPath))) {
    const embedder = await embedderFor(modelPath);
    const labels = await loadClusterLabels(fixturePaths.clusterLabels());
    const version = path.basename(taxonomyPath).replace(/\.json$/, '');
    await writeJsonAtomic(taxonomyPath, buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: embedder.dim, clusters: 32, seed: 1, version }));
    generated = true;
  }
  const taxonomy = parseTaxonomyModel(await readJson(taxonomyPath));
  return { modelPath, modelSha256: sha256Hex(await fs.readFile(modelPath)), taxonomyPath, taxonomyVersion: taxonomy.version, generated };
}

// One onnxruntime session per worker process and model: creating it is expensive (and on a GPU, memory-bound).
const embedders = new Map<string, Promise<Embedder>>();
function embedderFor(modelPath: string): Promise<Embedder> {
  const providers = readWorkerEnv().ORT_EXECUTION_PROVIDERS.split(',').map((p) => p.trim()).filter(Boolean);
  const cacheKey = `${modelPath}|${providers.join(',')}`;
  let e = embedders.get(cacheKey);
  if (!e) {
    e = createEmbedder({ modelPath, executionProviders: providers, batchSize: 16 });
    e.catch(() => embedders.delete(cacheKey));
    embedders.set(cacheKey, e);
  }
  return e;
}

export async function annotateUnit(task: UnitTask): Promise<AnnotateResult> {
  return runUnitStage(task, 'annotate', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const prepared = await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'));
    const embedder = await embedderFor(layout.resolveData(task.release.annotate.modelPath));
    const taxonomy: TaxonomyModel = parseTaxonomyModel(await readJson(layout.resolveData(task.release.annotate.taxonomyPath)));
    const labels: FigureLabel[] = [];
    let failed = 0;
    const batch = task.release.annotate.batchSize;
    for (let i = 0; i < prepared.length; i += batch) {
      const slice = prepared.slice(i, i + batch);
      const images = await Promise.all(slice.map((p) => fs.readFile(stagedImagePath(unitDir, p.key))));
      let embeddings: Float32Array[];
      try {
        embeddings = await embedder.embed(images);
      } catch {
        // A batch failed: embed one by one so a single bad image cannot take the others with it.
        embeddings = [];
        for (const [j, img] of images.entries()) {
          try {
            embeddings.push((await embedder.embed([img]))[0]!);
          } catch (err) {
            embeddings.push(new Float32Array(0));
            failed++;
            q.push(quarantine({ article: slice[j]!.article, figure: slice[j]!.key, stage: 'annotate', reason: 'embedding-failed', detail: (err as Error).message }));
          }
        }
      }
      slice.forEach((p, j) => {
        const e = embeddings[j]!;
        if (e.length === 0) return;
        const { clusterId, distance } = assignCluster(taxonomy, e);
        labels.push({ key: p.key, clusterId, distance: Math.round(distance * 1e6) / 1e6 });
      });
      heartbeat({ embedded: Math.min(i + batch, prepared.length), of: prepared.length, provider: embedder.provider });
    }
    const out = path.join(unitDir, 'labels.ndjson');
    await writeFileAtomic(out, ndjson(labels));
    return { result: { images: prepared.length, labelled: labels.length, failed, provider: embedder.provider, taxonomyVersion: taxonomy.version }, outputs: [out] };
  });
}
