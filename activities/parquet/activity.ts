import * as path from 'node:path';
import type { Subset } from '../../config/release';
import { readNdjson } from '../common/files';
import { shardName } from '../common/layout';
import { runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { writeSamplesParquet, type SampleRow } from './writer';

export interface ParquetResult {
  subset: Subset;
  file: string;
  rows: number;
  bytes: number;
  sha256: string;
}

/** One parquet file per shard, same rows in the same order, for filtering without opening the tars. */
export async function writeParquet(task: UnitTask): Promise<Staged<ParquetResult>> {
  return runUnitStage(task, 'parquet', async ({ layout, unit }) => {
    const rows = await readNdjson<SampleRow>(path.join(layout.unitDir(unit.unitId), 'samples.ndjson'));
    const file = layout.parquetFile(unit.subset, unit.index);
    const written = await writeSamplesParquet(file, rows, { includeImageBytes: false });
    return {
      result: { subset: unit.subset, file: `${unit.subset}/${shardName(unit.index)}.parquet`, rows: written.rows, bytes: written.bytes, sha256: written.sha256 },
      outputs: [file],
    };
  });
}
