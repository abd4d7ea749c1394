import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { CpuActivities } from '../activities';
import type { ExportInput, ExportResult } from '../activities/export/activity';
import { cpuOptions } from './options';

// One activity reads every selected source shard: give it the time a large export needs; heartbeats still
// hand the work to another worker within a minute when this one dies, and carry a checkpoint the retry
// continues from (activities/export): a retry keeps every closed output shard and re-reads the source from where
// the open one began (with a selective filter that can be most of a subset, as the open shard fills slowly).
const cpu = proxyActivities<CpuActivities>({ ...cpuOptions, startToCloseTimeout: '24h' });

/** Writes a new WebDataset of the samples of a finished release that match a filter (activities/export). */
export async function exportSubsetWorkflow(input: ExportInput): Promise<ExportResult> {
  setCurrentDetails(`export from release ${input.releaseId} to ${input.target}`);
  const result = await cpu.exportSubset(input);
  setCurrentDetails(`exported ${result.samples} samples (${result.scanned.rows} scanned) to ${result.target}`);
  return result;
}
