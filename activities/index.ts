import { annotateUnit, ensureAnnotationModels } from './annotate/activity';
import { enrichBatch } from './enrich/activity';
import { fetchArticles, fetchFigureMedia } from './fetch/activity';
import { prepareImages } from './images/activity';
import { writeParquet } from './parquet/activity';
import { parseArticles } from './parse/activity';
import { planRelease } from './plan/activity';
import { publishRelease } from './publish/activity';
import { finalizeRelease } from './publish/finalize';
import { writeShard } from './shard/activity';

/** Activities by pool: each worker registers only its own pool's activities on its own task queue. */
export const ioActivities = { planRelease, fetchArticles, fetchFigureMedia, publishRelease };
export const entrezActivities = { enrichBatch };
export const cpuActivities = { parseArticles, prepareImages, writeShard, writeParquet, finalizeRelease };
export const gpuActivities = { ensureAnnotationModels, annotateUnit };

export type IoActivities = typeof ioActivities;
export type EntrezActivities = typeof entrezActivities;
export type CpuActivities = typeof cpuActivities;
export type GpuActivities = typeof gpuActivities;
export type PoolName = 'io' | 'entrez' | 'cpu' | 'gpu';
