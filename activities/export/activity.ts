import { ApplicationFailure, Context } from '@temporalio/activity';
import * as path from 'node:path';
import { activityLog } from '../common/stage';
import { releaseTree } from '../common/sync';
import {
  exportSubset as runExportSubset,
  ExportConfigError,
  type ExportInput,
  type ExportProgress,
  type ExportResult,
} from './export';

export type { ExportInput, ExportResult } from './export';

/**
 * Subset export on the cpu queue: filters a finished release's parquet files and writes a new WebDataset of the
 * matching samples under the data dir. Heartbeats carry progress and a checkpoint (ExportProgress): a retry
 * (worker killed, heartbeat timeout, a failed attempt) reads the last one from its heartbeat details and
 * continues from there, keeping the output shards already closed. Bad input is a non-retryable
 * ExportConfigError; it and a cancelled export remove the partial folder, other failures leave it to the retry.
 */
export async function exportSubset(input: ExportInput): Promise<ExportResult> {
  const ctx = Context.current();
  const last = ctx.info.heartbeatDetails as Partial<ExportProgress> | undefined;
  const files = releaseTree({ dataDir: input.dataDir, store: input.store });
  const local = { ...input, dataDir: files.localDir };
  if (files.remote) {
    const root = path.join(files.localDir, 'releases', input.releaseId);
    for (const dir of ['webdataset', 'parquet']) await files.pullDir(path.join(root, dir));
  }
  try {
    const result = await runExportSubset(local, {
      onProgress: (p) => ctx.heartbeat(p),
      signal: ctx.cancellationSignal,
      resumeFrom: last?.checkpoint,
      onResume: (from) =>
        activityLog('info', 'export resumes from the last checkpoint', { attempt: ctx.info.attempt, ...from }),
      keepPartialOnFailure: (err) => !(err instanceof ExportConfigError) && !ctx.cancellationDetails?.cancelRequested,
    });
    if (files.remote && !path.relative(files.localDir, result.target).startsWith('..')) {
      const written = await files.localFiles(result.target);
      const record = path.join(result.target, 'export.json');
      await files.pushAll(written.filter((f) => f !== record));
      await files.push(record);
    }
    return result;
  } catch (err) {
    if (err instanceof ExportConfigError) throw ApplicationFailure.nonRetryable(err.message, 'ExportConfigError');
    throw err;
  }
}
