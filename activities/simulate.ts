import type { ReleaseInput, Subset } from '../config/release';
import type { AnnotateResult, AnnotationModels } from './annotate/activity';
import type { Staged, UnitTask } from './common/stage';
import type { EnrichBatchResult } from './enrich/activity';
import type { FetchArticlesResult, FetchMediaResult } from './fetch/activity';
import type { PrepareImagesResult } from './images/activity';
import type { ParquetResult } from './parquet/activity';
import type { ParseResult } from './parse/activity';
import type { PlanSummary } from './plan/activity';
import type { PublishResult } from './publish/activity';
import type { ReleaseSummary } from './publish/finalize';
import type { ShardResult } from './shard/activity';

/**
 * Tiny stand-ins for every activity, with the real names and result shapes, so the real workflows can run a
 * release shaped like the full PMC OA subset (8.2 million articles, ~3,300 units) on a dev server in minutes.
 * They do no I/O: what is measured is orchestration (histories, executions, continue-as-new), not data.
 */
export interface SimulationShape {
  articles: Record<Subset, number>;
  articlesPerUnit: number;
  figuresPerArticle: number;
  pmidBatchesPerUnit: number;
}

export const PMC_OA_2026_SHAPE: SimulationShape = {
  // About 8.2 million OA articles (Sept 2026), split like BIOMEDICA's subsets (67% / 26% / 7%).
  articles: { commercial: 5_500_000, noncommercial: 2_100_000, other: 600_000 },
  articlesPerUnit: 2500,
  figuresPerArticle: 4,
  pmidBatchesPerUnit: 13,
};

function unitsOf(shape: SimulationShape, subset: Subset): number {
  return Math.ceil(shape.articles[subset] / shape.articlesPerUnit);
}

function subsetOf(unitId: string): Subset {
  return unitId.slice(0, unitId.lastIndexOf('-')) as Subset;
}

export function createSimulatedActivities(shape: SimulationShape = PMC_OA_2026_SHAPE) {
  const perUnit = { articles: shape.articlesPerUnit, figures: shape.articlesPerUnit * shape.figuresPerArticle };
  const samplesPerUnit = Math.floor(perUnit.figures * 0.8);
  const total = (Object.keys(shape.articles) as Subset[]).reduce((n, s) => n + shape.articles[s], 0);
  return {
    async ensureAnnotationModels(_r: ReleaseInput): Promise<AnnotationModels> {
      return {
        modelPath: 'sim.onnx',
        modelSha256: '0'.repeat(64),
        taxonomyPath: 'sim.json',
        taxonomyVersion: 'sim',
        generated: false,
      };
    },
    async planRelease(r: ReleaseInput): Promise<PlanSummary> {
      const subsets = Object.fromEntries(
        (Object.keys(shape.articles) as Subset[]).map((s) => [
          s,
          {
            units: unitsOf(shape, s),
            articles: shape.articles[s],
            figureImages: shape.articles[s] * shape.figuresPerArticle,
          },
        ]),
      ) as PlanSummary['subsets'];
      return {
        releaseId: r.releaseId,
        inventoryManifest: 'simulated',
        inventoryRows: total,
        selectedArticles: total,
        excluded: {},
        subsets,
        planHash: 'simulated',
        metadataFetched: total,
        changes: { previousRelease: null, new: total, changed: 0, unchanged: 0, removed: 0, newlyRetracted: 0 },
        otherLicenses: {},
      };
    },
    async fetchArticles(_t: UnitTask): Promise<Staged<FetchArticlesResult>> {
      return { articles: perUnit.articles, fetched: perUnit.articles, reused: 0, failed: 0, quarantined: 0 };
    },
    async parseArticles(_t: UnitTask): Promise<Staged<ParseResult>> {
      return {
        articles: perUnit.articles,
        parsed: perUnit.articles,
        failed: 0,
        figures: perUnit.figures,
        candidates: perUnit.figures,
        pmids: perUnit.articles,
        pmidBatches: shape.pmidBatchesPerUnit,
        withoutPmid: 0,
        quarantined: 0,
      };
    },
    async enrichBatch(_t: UnitTask, batch: number): Promise<Staged<EnrichBatchResult>> {
      return { batch, requested: 200, returned: 200, notReturned: [], failed: null, quarantined: 0 };
    },
    async fetchFigureMedia(_t: UnitTask): Promise<Staged<FetchMediaResult>> {
      return { wanted: perUnit.figures, fetched: perUnit.figures, reused: 0, failed: 0, quarantined: 0 };
    },
    async prepareImages(_t: UnitTask): Promise<Staged<PrepareImagesResult>> {
      return {
        candidates: perUnit.figures,
        prepared: samplesPerUnit,
        rejected: perUnit.figures - samplesPerUnit,
        passthrough: samplesPerUnit,
        converted: 0,
        quarantined: perUnit.figures - samplesPerUnit,
      };
    },
    async annotateUnit(_t: UnitTask): Promise<Staged<AnnotateResult>> {
      return {
        images: samplesPerUnit,
        labelled: samplesPerUnit,
        failed: 0,
        provider: 'simulated',
        taxonomyVersion: 'sim',
        fallbacks: [],
        inputType: 'float32',
        modelSha256: '0'.repeat(64),
        resumedFrom: 0,
        embeddedNow: samplesPerUnit,
        quarantined: 0,
      };
    },
    async writeShard(t: UnitTask): Promise<Staged<ShardResult>> {
      const subset = subsetOf(t.unitId);
      const shard = {
        shard: `${subset}/${t.unitId.slice(-6)}.tar`,
        samples: samplesPerUnit,
        articles: perUnit.articles,
        bytes: 0,
        sha256: '',
      };
      return { subset, samples: samplesPerUnit, articles: perUnit.articles, bytes: 0, shards: [shard], quarantined: 0 };
    },
    async writeParquet(t: UnitTask): Promise<Staged<ParquetResult>> {
      const subset = subsetOf(t.unitId);
      const file = {
        file: `${subset}/${t.unitId.slice(-6)}.parquet`,
        shard: `${subset}/${t.unitId.slice(-6)}.tar`,
        rows: samplesPerUnit,
        bytes: 0,
        sha256: '',
      };
      return { subset, rows: samplesPerUnit, bytes: 0, files: [file], quarantined: 0 };
    },
    async finalizeRelease(r: ReleaseInput): Promise<ReleaseSummary> {
      const subsets = Object.fromEntries(
        (Object.keys(shape.articles) as Subset[]).map((s) => [
          s,
          {
            shards: unitsOf(shape, s),
            samples: unitsOf(shape, s) * samplesPerUnit,
            articles: shape.articles[s],
            bytes: 0,
            licenses: {},
          },
        ]),
      ) as ReleaseSummary['subsets'];
      const samples = Object.values(subsets).reduce((n, s) => n + s.samples, 0);
      return {
        releaseId: r.releaseId,
        inventoryManifest: 'simulated',
        articles: { planned: total, parsed: total, excludedAtPlan: {} },
        figures: total * shape.figuresPerArticle,
        samples,
        rejected: total * shape.figuresPerArticle - samples,
        rejectedByReason: {},
        subsets,
        warnings: 0,
        enrichment: { pmids: total, returned: total, notReturned: 0, failedBatches: 0, withoutPmid: 0 },
        annotation: { provider: 'simulated', taxonomyVersion: 'sim' },
      };
    },
    async publishRelease(_r: ReleaseInput): Promise<PublishResult> {
      return { target: 'simulated', files: 0, uploaded: 0, unchanged: 0 };
    },
  };
}
