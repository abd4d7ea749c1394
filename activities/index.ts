import { annotateUnit, ensureAnnotationModels } from './annotate/activity';
import { describeRetries } from './common/retries';
import { buildTaxonomyReviewPack, sampleTaxonomyEmbeddings } from './annotate/taxonomy-activity';
import { enrichBatch } from './enrich/activity';
import { exportSubset } from './export/activity';
import { fetchArticles, fetchFigureMedia } from './fetch/activity';
import { planRelease } from './plan/activity';
import { publishRelease } from './publish/activity';
import { commitHubBatch, planHubPublish } from './publish/hub-activity';
import { cpuThreadCount, inCpuThread } from './common/threads';
import { CPU_TASKS, type CpuTaskName } from './cpu-tasks';

/** Activities by pool: each worker registers only its own pool's activities on its own task queue. */
export const ioActivities = { planRelease, fetchArticles, fetchFigureMedia, publishRelease, planHubPublish };
/** Hub commits: hosted by the io pool on their own rate-limited queue (biomedica-hub). */
export const hubActivities = { commitHubBatch };
export const entrezActivities = { enrichBatch };
/**
 * `name` of activities/cpu-tasks.ts, run on a thread of the cpu pool (activities/common/threads.ts), or on the main
 * thread with BIOMEDICA_CPU_THREADS=0.
 */
function threaded<K extends CpuTaskName>(name: K): (typeof CPU_TASKS)[K] {
  const inline = CPU_TASKS[name] as (...args: unknown[]) => Promise<unknown>;
  return ((...args: unknown[]) =>
    cpuThreadCount() === 0 ? inline(...args) : inCpuThread(name, args)) as (typeof CPU_TASKS)[K];
}

export const cpuActivities = {
  parseArticles: threaded('parseArticles'),
  prepareImages: threaded('prepareImages'),
  writeShard: threaded('writeShard'),
  writeParquet: threaded('writeParquet'),
  finalizeRelease: threaded('finalizeRelease'),
  exportSubset,
  fitTaxonomyModel: threaded('fitTaxonomyModel'),
  buildTaxonomyReviewPack,
};
export const gpuActivities = { ensureAnnotationModels, annotateUnit, sampleTaxonomyEmbeddings };
/** Hosted with the workflows on their own queue: whoever runs the workflows can say what they are waiting on. */
export const workflowQueueActivities = { describeRetries };

export type IoActivities = typeof ioActivities;
export type HubActivities = typeof hubActivities;
export type EntrezActivities = typeof entrezActivities;
export type CpuActivities = typeof cpuActivities;
export type GpuActivities = typeof gpuActivities;
export type WorkflowQueueActivities = typeof workflowQueueActivities;
export type PoolName = 'io' | 'entrez' | 'cpu' | 'gpu';
