import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { CpuActivities } from '../activities';
import type { ExportInput, ExportResult } from '../activities/export/activity';
import { cpuOptions } from './options';

// One activity reads every selected source shard: give it the time a large export needs; heartbeats still
// hand the work to another worker within a minute when this one dies, and carry a checkpoint the retry
// continues from (activities/export), so a retry late in a long export loses at most one output shard's work.
const cpu = proxyActivities<CpuActivities>({ ...cpuOptions, startToCloseTimeout: '24h' });

/** Writes a new WebDataset of the samples of a finished release that match a filter (activities/export). */
export async function exportSubsetWorkflow(input: ExportInput): Promise<ExportResult> {
  setCurrentDetails(`export from release ${input.releaseId} to ${input.target}`);
  const result = await cpu.exportSubset(input);
  setCurrentDetails(`exported ${result.samples} samples (${result.scanned.rows} scanned) to ${result.target}`);
  return result;
}
