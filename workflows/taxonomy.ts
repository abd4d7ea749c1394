import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { CpuActivities, GpuActivities } from '../activities';
import type {
  FitResult,
  FitTaxonomyInputArgs,
  ReviewPackResult,
  SampleResult,
} from '../activities/annotate/taxonomy-activity';
import { cpuOptions, gpuOptions } from './options';

// The fit is one long CPU computation (a 1024-d covariance over the sample, then k-means with K = 2000) that
// heartbeats as it goes: a longer start-to-close than the unit stages, the same heartbeat timeouts and retries.
const gpu = proxyActivities<GpuActivities>({ ...gpuOptions, startToCloseTimeout: '12h' });
const cpu = proxyActivities<CpuActivities>({ ...cpuOptions, startToCloseTimeout: '12h' });

export interface FitTaxonomyResult {
  version: string;
  taxonomyPath: string;
  sample: SampleResult;
  fit: FitResult;
  review: ReviewPackResult;
}

/** The workflow id of a fit: one per release and taxonomy version (versions are immutable). */
export function fitTaxonomyWorkflowId(releaseId: string, version: string): string {
  return `taxonomy-${releaseId}-${version}`;
}

/**
 * Fits a new taxonomy version on a release's figures: a seeded sample of their embeddings (stored by annotateUnit,
 * or computed now for units annotated without them), PCA + mini-batch k-means with fixed seeds, the versioned
 * artifact (labels empty), and the expert review pack (HTML gallery per cluster + the labels file to fill).
 * Importing the filled labels (cli: taxonomy import-labels) makes the next version, which a release then names in
 * `annotate.taxonomyPath`. Each step is idempotent, so a rerun with the same input reuses what exists.
 */
export async function fitTaxonomyWorkflow(input: FitTaxonomyInputArgs): Promise<FitTaxonomyResult> {
  setCurrentDetails(`taxonomy ${input.version}: sampling embeddings of release ${input.release.releaseId}`);
  const sample = await gpu.sampleTaxonomyEmbeddings(input);
  setCurrentDetails(`taxonomy ${input.version}: fitting PCA and k-means on ${sample.samples} embeddings`);
  const fit = await cpu.fitTaxonomyModel(input);
  setCurrentDetails(`taxonomy ${input.version}: building the review pack`);
  const review = await cpu.buildTaxonomyReviewPack({
    dataDir: input.release.dataDir,
    ...(input.release.store ? { store: input.release.store } : {}),
    taxonomyPath: fit.taxonomyPath,
    perCluster: input.perCluster,
    thumbSize: input.thumbSize,
  });
  setCurrentDetails(
    `taxonomy ${input.version}: ${fit.clusters} clusters from ${sample.samples} figures; review pack at ${review.index}`,
  );
  return { version: fit.version, taxonomyPath: fit.taxonomyPath, sample, fit, review };
}
