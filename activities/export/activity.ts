import { ApplicationFailure } from '@temporalio/activity';
import { cancellationSignal, heartbeat } from '../common/stage';
import { exportSubset as runExportSubset, ExportConfigError, type ExportInput, type ExportResult } from './export';

export type { ExportInput, ExportResult } from './export';

/**
 * Subset export on the cpu queue: filters a finished release's parquet files and writes a new WebDataset of the
 * matching samples under the data dir. Heartbeats carry progress; a retry starts the export again from the
 * beginning (the target only ever appears complete). Bad input is a non-retryable ExportConfigError.
 */
export async function exportSubset(input: ExportInput): Promise<ExportResult> {
  try {
    return await runExportSubset(input, { onProgress: (p) => heartbeat(p), signal: cancellationSignal() });
  } catch (err) {
    if (err instanceof ExportConfigError) throw ApplicationFailure.nonRetryable(err.message, 'ExportConfigError');
    throw err;
  }
}
