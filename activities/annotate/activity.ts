import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { fixturePaths } from '../../config/paths';
import { readWorkerEnv, type ReleaseInput } from '../../config/release';
import { exists, ndjson, readJson, readNdjson, sha256Hex, writeFileAtomic, writeJsonAtomic } from '../common/files';
import { quarantine } from '../common/quarantine';
import { pullDataFile, pushDataFile, releaseDataFile, releaseTree } from '../common/sync';
import {
  activityLog,
  cancellationSignal,
  heartbeat,
  layoutOf,
  runUnitStage,
  type Staged,
  type UnitTask,
} from '../common/stage';
import { stagedImagePath, type PreparedImage } from '../images/activity';
import { openModelInputs } from '../images/model-inputs';
import { createEmbedder, sha256OfFile, type Embedder } from './embedder';
import { DecodedRgb } from './preprocess';
import {
  assignCluster,
  buildBootstrapTaxonomy,
  loadClusterLabels,
  parseTaxonomyModel,
  type TaxonomyModel,
} from './taxonomy';
import { buildTinyVitModel } from './tiny-vit';
import {
  bytesToRows,
  readUnitEmbeddingsMeta,
  resumableProgress,
  rowsToBytes,
  sameIdentity,
  unitEmbeddingPaths,
  type AnnotateProgress,
  type EmbeddingFailure,
  type EmbeddingIdentity,
  type UnitEmbeddingsMeta,
} from './unit-embeddings';

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
  /** The execution provider that ran the model. */
  provider: string;
  taxonomyVersion: string;
  /** Providers tried before `provider`, with why each failed ("cuda: <error>"). */
  fallbacks: string[];
  /** The model's input tensor type (an fp16 export takes float16). */
  inputType: 'float32' | 'float16';
  modelSha256: string;
  /** Images already embedded by an earlier attempt (from its last heartbeat) that this attempt kept. */
  resumedFrom: number;
  /** Images this attempt put through the model. */
  embeddedNow: number;
}

const GENERATED_MODEL = /(^|\/)tiny-vit-seed(\d+)(-fp16)?\.onnx$/;

/**
 * Makes sure the embedding model and the taxonomy exist. The sample's small ViT-shaped model (tiny-vit-seed<N>.onnx,
 * or tiny-vit-seed<N>-fp16.onnx for the half-precision variant) and bootstrap taxonomy are generated
 * deterministically; any other model must be supplied by the operator.
 */
export async function ensureAnnotationModels(release: ReleaseInput): Promise<AnnotationModels> {
  const layout = layoutOf(release);
  const modelPath = layout.resolveData(release.annotate.modelPath);
  const taxonomyPath = layout.resolveData(release.annotate.taxonomyPath);
  let generated = false;
  // With a store, the store's copies are the release's (the pools on other hosts read them from there).
  const fromStore = {
    model: (await pullDataFile(release, release.annotate.modelPath)) !== null,
    taxonomy: (await pullDataFile(release, release.annotate.taxonomyPath)) !== null,
  };
  if (!fromStore.model && !(await exists(modelPath))) {
    const m = GENERATED_MODEL.exec(release.annotate.modelPath);
    if (!m)
      throw ApplicationFailure.nonRetryable(
        `embedding model ${modelPath} not found; export one as docs/annotation.md shows`,
        'ModelMissing',
      );
    await writeFileAtomic(modelPath, buildTinyVitModel({ seed: Number(m[2]), dtype: m[3] ? 'float16' : 'float32' }));
    generated = true;
  }
  if (!fromStore.model) await pushDataFile(release, modelPath);
  if (!fromStore.taxonomy && !(await exists(taxonomyPath))) {
    const embedder = await embedderFor(modelPath);
    const labels = await loadClusterLabels(fixturePaths.clusterLabels());
    const version = path.basename(taxonomyPath).replace(/\.json$/, '');
    await writeJsonAtomic(
      taxonomyPath,
      buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: embedder.dim, clusters: 32, seed: 1, version }),
    );
    generated = true;
  }
  if (!fromStore.taxonomy) await pushDataFile(release, taxonomyPath);
  const taxonomy = parseTaxonomyModel(await readJson(taxonomyPath));
  return {
    modelPath,
    modelSha256: await sha256OfFile(modelPath),
    taxonomyPath,
    taxonomyVersion: taxonomy.version,
    generated,
  };
}

interface InfoLogger {
  info(message: string, meta?: Record<string, unknown>): void;
}

/** The activity's logger (the worker's, with the activity's metadata), or stderr outside an activity. */
function activityLogger(): InfoLogger {
  try {
    return Context.current().log;
  } catch {
    return { info: (message, meta) => console.error(message, meta ? JSON.stringify(meta) : '') };
  }
}

// One onnxruntime session per worker process and model: creating it is expensive (and on a GPU, memory-bound).
const embedders = new Map<string, Promise<Embedder>>();

/** The process's embedder for a model, created on first use; the provider in use is logged once, when it is created. */
export function embedderFor(modelPath: string): Promise<Embedder> {
  const providers = readWorkerEnv()
    .ORT_EXECUTION_PROVIDERS.split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const cacheKey = `${modelPath}|${providers.join(',')}`;
  let e = embedders.get(cacheKey);
  if (!e) {
    e = createEmbedder({ modelPath, executionProviders: providers, batchSize: 16 }).then((emb) => {
      const fallbacks = emb.fallbacks.map((f) => `${f.provider}: ${f.error.split('\n')[0]}`);
      activityLogger().info(
        `annotate: onnxruntime execution provider ${emb.provider} for ${path.basename(modelPath)}`,
        {
          provider: emb.provider,
          tried: providers,
          fallbacks,
          inputType: emb.inputType,
          dim: emb.dim,
          preprocess: emb.preprocessSource,
          modelSha256: emb.modelSha256,
          pid: process.pid,
        },
      );
      return emb;
    });
    e.catch(() => embedders.delete(cacheKey));
    embedders.set(cacheKey, e);
  }
  return e;
}

/** Release every cached session (worker shutdown, tests). */
export async function releaseEmbedders(): Promise<void> {
  const all = [...embedders.values()];
  embedders.clear();
  for (const e of all) await (await e.catch(() => null))?.release();
}

function heartbeatDetails(): unknown {
  try {
    return Context.current().info.heartbeatDetails;
  } catch {
    return undefined;
  }
}

/**
 * Embeds a unit's staged images and assigns each to its taxonomy cluster (labels.ndjson); keeps the embeddings
 * (embeddings.f32, unit-embeddings.ts) for the taxonomy fit. Batches flow through the embedder's pipeline (decode
 * of batch n+1 overlaps inference of batch n). After every batch the rows go to a partial file and the activity
 * heartbeats how many images are done; a retried attempt resumes from its last heartbeat.
 */
export async function annotateUnit(task: UnitTask): Promise<Staged<AnnotateResult>> {
  return runUnitStage(task, 'annotate', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const indexText = await fs.readFile(path.join(unitDir, 'images.ndjson'), 'utf8').catch(() => '');
    const prepared = await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'));
    const embedder = await embedderFor(await releaseDataFile(task.release, task.release.annotate.modelPath));
    const taxonomy: TaxonomyModel = parseTaxonomyModel(
      await readJson(await releaseDataFile(task.release, task.release.annotate.taxonomyPath)),
    );
    const dim = embedder.dim;
    const rowBytes = dim * 4;
    const identity: EmbeddingIdentity = {
      dim,
      rows: prepared.length,
      modelSha256: embedder.modelSha256,
      imagesSha256: sha256Hex(indexText),
    };
    const files = unitEmbeddingPaths(unitDir);

    let failures: EmbeddingFailure[] = [];
    let resumedFrom: number;
    let embeddedNow = 0;
    let predecoded = 0;
    const stored = await readUnitEmbeddingsMeta(unitDir);
    const storedSize = (await fs.stat(files.file).catch(() => null))?.size;
    if (stored && sameIdentity(stored, identity) && storedSize === prepared.length * rowBytes) {
      // Finished by an earlier attempt that stopped before its manifest: nothing to embed again.
      failures = stored.failed;
      resumedFrom = prepared.length;
    } else {
      const progress = resumableProgress(heartbeatDetails(), identity);
      const onDisk = Math.floor(((await fs.stat(files.partial).catch(() => null))?.size ?? 0) / rowBytes);
      const start = progress ? Math.min(progress.done, onDisk) : 0;
      if (start > 0) {
        failures = (await readNdjson<EmbeddingFailure>(files.failedPartial)).filter((f) => f.index < start);
      }
      await fs.mkdir(unitDir, { recursive: true });
      await writeFileAtomic(files.failedPartial, ndjson(failures));
      // The images stage's decode of each figure, when it made it with this model's preprocessing (the same
      // bytes decodeRgb makes of the JPEG); else the JPEG, pulled from the store if this host has no copy.
      const inputs = await openModelInputs(unitDir, embedder.preprocess);
      const fh = await fs.open(files.partial, start > 0 ? 'r+' : 'w');
      try {
        await fh.truncate(start * rowBytes); // rows written after the last recorded heartbeat are redone
        resumedFrom = start;
        const batch = task.release.annotate.batchSize;
        const starts: number[] = [];
        for (let i = start; i < prepared.length; i += batch) starts.push(i);
        const tree = releaseTree(task.release);
        const loadOne = async (key: string): Promise<Buffer | DecodedRgb | Error> => {
          // A record that does not inflate is decoded from the JPEG instead.
          const rgb = await inputs?.get(key).catch(() => null);
          if (rgb) {
            predecoded++;
            return new DecodedRgb(rgb);
          }
          const file = stagedImagePath(unitDir, key);
          const pulled = tree.remote && !(await exists(file));
          // A JPEG the store lacks is the store's fault, not the figure's: the activity fails and is retried.
          if (pulled && !(await tree.pull(file)))
            throw ApplicationFailure.retryable(`${tree.keyOf(file)} is not in the store`, 'StoreObjectMissing');
          try {
            return await fs.readFile(file);
          } catch (err) {
            return new Error(`staged image unreadable: ${(err as Error).message}`);
          } finally {
            if (pulled) await fs.rm(file, { force: true });
          }
        };
        const load = (i: number) => Promise.all(prepared.slice(i, i + batch).map((p) => loadOne(p.key)));
        for await (const b of embedder.embedBatches(starts, load)) {
          const i = b.item;
          const rows = new Float32Array(b.embeddings.length * dim).fill(NaN);
          const failedNow: EmbeddingFailure[] = [];
          b.embeddings.forEach((e, j) => {
            if (e) rows.set(e, j * dim);
            else
              failedNow.push({
                index: i + j,
                key: prepared[i + j]!.key,
                article: prepared[i + j]!.article,
                detail: b.errors[j] ?? 'unknown error',
              });
          });
          await fh.write(rowsToBytes(rows), 0, rows.length * 4, i * rowBytes);
          if (failedNow.length) {
            await fs.appendFile(files.failedPartial, ndjson(failedNow));
            failures.push(...failedNow);
          }
          embeddedNow += b.embeddings.length;
          const done: AnnotateProgress = {
            kind: 'annotate-progress',
            ...identity,
            done: i + b.embeddings.length,
            provider: embedder.provider,
          };
          heartbeat(done);
          const signal = cancellationSignal();
          if (signal?.aborted)
            throw signal.reason instanceof Error ? signal.reason : new CancelledFailure('annotateUnit cancelled');
        }
        await fh.sync();
        activityLog('info', `annotate: ${predecoded} of ${embeddedNow} figures from the images stage's decode`, {
          unitId: unit.unitId,
          predecoded,
          embeddedNow,
        });
      } finally {
        await fh.close();
        await inputs?.close();
      }
      const meta: UnitEmbeddingsMeta = {
        format: 'f32le-rows',
        ...identity,
        provider: embedder.provider,
        inputType: embedder.inputType,
        failed: failures,
      };
      // Meta first, then the rename: a crash in between leaves a meta that no longer matches a complete file.
      await writeJsonAtomic(files.meta, meta);
      await fs.rename(files.partial, files.file);
      await fs.rm(files.failedPartial, { force: true });
    }

    const all = bytesToRows(await fs.readFile(files.file));
    const failedIdx = new Set(failures.map((f) => f.index));
    const labels: FigureLabel[] = [];
    prepared.forEach((p, i) => {
      if (failedIdx.has(i)) return;
      const { clusterId, distance } = assignCluster(taxonomy, all.subarray(i * dim, (i + 1) * dim));
      labels.push({ key: p.key, clusterId, distance: Math.round(distance * 1e6) / 1e6 });
    });
    for (const f of failures)
      q.push(
        quarantine({
          article: f.article,
          figure: f.key,
          stage: 'annotate',
          reason: 'embedding-failed',
          detail: f.detail,
        }),
      );
    const out = path.join(unitDir, 'labels.ndjson');
    await writeFileAtomic(out, ndjson(labels));
    return {
      result: {
        images: prepared.length,
        labelled: labels.length,
        failed: failures.length,
        provider: embedder.provider,
        fallbacks: embedder.fallbacks.map((f) => `${f.provider}: ${f.error.split('\n')[0]}`),
        inputType: embedder.inputType,
        modelSha256: embedder.modelSha256,
        taxonomyVersion: taxonomy.version,
        resumedFrom,
        embeddedNow,
      },
      outputs: [out, files.file, files.meta],
    };
  });
}
