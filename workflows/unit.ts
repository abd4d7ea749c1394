import { proxyActivities, setCurrentDetails, sleep } from '@temporalio/workflow';
import type { CpuActivities, EntrezActivities, GpuActivities, IoActivities } from '../activities';
import type { UnitTask } from '../activities/common/stage';
import type { ParquetResult } from '../activities/parquet/activity';
import type { ShardResult } from '../activities/shard/activity';
import { msUntilOffPeak } from './off-peak';
import { cpuOptions, entrezOptions, gpuOptions, ioOptions } from './options';

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
}

/** One unit (one shard's worth of articles) through every stage; PubMed enrichment runs beside the image path. */
export async function unitWorkflow(task: UnitTask): Promise<UnitResult> {
  setCurrentDetails(`unit ${task.unitId}: fetch`);
  await io.fetchArticles(task);
  setCurrentDetails(`unit ${task.unitId}: parse`);
  const parsed = await cpu.parseArticles(task);
  const enriched = enrichAll(task, parsed.pmidBatches);
  // Awaited below; until then a rejection (e.g. on cancellation) must not count as unhandled.
  enriched.catch(() => undefined);
  setCurrentDetails(`unit ${task.unitId}: images`);
  await io.fetchFigureMedia(task);
  await cpu.prepareImages(task);
  setCurrentDetails(`unit ${task.unitId}: annotate`);
  await gpu.annotateUnit(task);
  await enriched;
  setCurrentDetails(`unit ${task.unitId}: shard`);
  const shard = await cpu.writeShard(task, parsed.pmidBatches);
  const parquet = await cpu.writeParquet(task);
  setCurrentDetails(`unit ${task.unitId}: done, ${shard.samples} samples in ${shard.shard}`);
  return { unitId: task.unitId, articles: parsed.parsed, figures: parsed.figures, shard, parquet };
}

/** Every PMID batch of the unit, one request each; with `offPeak`, each waits on a durable timer for NCBI's quiet hours. */
async function enrichAll(task: UnitTask, batches: number): Promise<void> {
  await Promise.all(
    Array.from({ length: batches }, async (_, b) => {
      if (task.release.entrez?.offPeak) {
        // Re-checked after each wait: a batch retried past 05:00 Eastern waits for the next window.
        for (let wait = msUntilOffPeak(Date.now()); wait > 0; wait = msUntilOffPeak(Date.now())) await sleep(wait);
      }
      await entrez.enrichBatch(task, b);
    }),
  );
}
