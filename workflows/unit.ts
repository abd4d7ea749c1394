import { defineSignal, getExternalWorkflowHandle, isCancellation, proxyActivities, sleep } from '@temporalio/workflow';
import type { CpuActivities, EntrezActivities, GpuActivities, IoActivities } from '../activities';
import type { UnitTask } from '../activities/common/stage';
import type { ParquetResult } from '../activities/parquet/activity';
import type { ShardResult } from '../activities/shard/activity';
import { detailsWithRetries } from './watch';
import { msUntilOffPeak } from './off-peak';
import { cpuOptions, entrezOptions, gpuOptions, ioOptions } from './options';
import { noRejections, type StageRejections, type UnitReport, type UnitStage } from './progress';

const io = proxyActivities<IoActivities>(ioOptions);
const entrez = proxyActivities<EntrezActivities>(entrezOptions);
const cpu = proxyActivities<CpuActivities>(cpuOptions);
const gpu = proxyActivities<GpuActivities>(gpuOptions);

export interface UnitResult {
  unitId: string;
  articles: number;
  figures: number;
  shard: ShardResult;
  parquet: ParquetResult;
  /** Rejections per stage. */
  rejected: StageRejections;
}

/** Where a unit reports the stages it enters: its subset driver (workflow id and run id). */
export interface UnitReportTarget {
  workflowId: string;
  runId?: string;
}

/** Sent by a unit to its subset driver as it enters parse, images, annotate and shard. */
export const unitStageSignal = defineSignal<[UnitReport]>('unitStage');

/** One unit (one shard's worth of articles) through every stage; PubMed enrichment runs beside the image path. */
export async function unitWorkflow(task: UnitTask, reportTo?: UnitReportTarget): Promise<UnitResult> {
  const rejected = noRejections();
  let enrichDone = false;
  // Current details (what the unit is doing), and which of its activities keeps failing, if one does.
  const details = detailsWithRetries(task.release.retryReportSeconds * 1000);
  // A unit tells its driver each stage it enters (4 signals a unit), so the driver's progress query counts units per
  // stage. A unit started on its own (by hand, in a test) reports to no one.
  const driver = reportTo ? getExternalWorkflowHandle(reportTo.workflowId, reportTo.runId) : null;
  const enter = async (stage: UnitStage) => {
    details.set(`unit ${task.unitId}: ${stage}`);
    // Awaited, so the driver holds the report before the unit's next stage (and its completion) can reach it.
    // A driver that is gone (terminated by hand) only loses the count: the unit goes on.
    if (driver) {
      await driver
        .signal(unitStageSignal, { unitId: task.unitId, stage, enrichDone, rejected: { ...rejected } })
        .catch((err: unknown) => {
          if (isCancellation(err)) throw err;
        });
    }
  };

  details.set(`unit ${task.unitId}: fetch`);
  const fetched = await io.fetchArticles(task);
  rejected.fetch += fetched.quarantined;
  await enter('parse');
  const parsed = await cpu.parseArticles(task);
  rejected.parse += parsed.quarantined;
  const enriched = enrichAll(task, parsed.pmidBatches).then((notReturned) => {
    rejected.enrich += notReturned;
    enrichDone = true;
  });
  // Awaited below; until then a rejection (e.g. on cancellation) must not count as unhandled.
  enriched.catch(() => undefined);
  await enter('images');
  const media = await io.fetchFigureMedia(task);
  const images = await cpu.prepareImages(task);
  rejected.images += media.quarantined + images.quarantined;
  await enter('annotate');
  const annotated = await gpu.annotateUnit(task);
  rejected.annotate += annotated.quarantined;
  await enriched;
  await enter('shard');
  const shard = await cpu.writeShard(task, parsed.pmidBatches);
  rejected.shard += shard.quarantined;
  const parquet = await cpu.writeParquet(task);
  details.set(`unit ${task.unitId}: done, ${shard.samples} samples in ${shard.shards.map((s) => s.shard).join(', ')}`);
  details.stop();
  return { unitId: task.unitId, articles: parsed.parsed, figures: parsed.figures, shard, parquet, rejected };
}

/**
 * Every PMID batch of the unit, one request each; with `offPeak`, each waits on a durable timer for NCBI's quiet
 * hours. Resolves to the number of PMIDs PubMed did not return.
 */
async function enrichAll(task: UnitTask, batches: number): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: batches }, async (_, b) => {
      if (task.release.entrez?.offPeak) {
        // Re-checked after each wait: a batch retried past 05:00 Eastern waits for the next window.
        for (let wait = msUntilOffPeak(Date.now()); wait > 0; wait = msUntilOffPeak(Date.now())) await sleep(wait);
      }
      return entrez.enrichBatch(task, b);
    }),
  );
  return results.reduce((n, r) => n + (r.notReturned?.length ?? 0), 0);
}
