import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Subset } from '../../config/release';
import { exists, readJson, readNdjson } from '../common/files';
import { runUnitStage, type StageManifest, type Staged, type UnitTask } from '../common/stage';
import type { ShardResult } from '../shard/activity';
import { writeSamplesParquet, type SampleRow } from './writer';

/** One parquet file: the rows of one shard file, in its order. */
export interface ParquetFile {
  /** `{subset}/NNNNNN.parquet` (or `NNNNNN_PPP.parquet` beside a unit's later shard parts). */
  file: string;
  shard: string;
  rows: number;
  bytes: number;
  sha256: string;
}

export interface ParquetResult {
  subset: Subset;
  rows: number;
  bytes: number;
  files: ParquetFile[];
}

/** One parquet file per shard file, same rows in the same order, for filtering without opening the tars. */
export async function writeParquet(task: UnitTask): Promise<Staged<ParquetResult>> {
  return runUnitStage(task, 'parquet', async ({ layout, unit }) => {
    const rows = await readNdjson<SampleRow>(path.join(layout.unitDir(unit.unitId), 'samples.ndjson'));
    // The shard stage's files, in order (a unit without samples has its one empty shard, and an empty parquet file).
    const shard = await readJson<StageManifest<ShardResult>>(layout.stageManifest(unit.unitId, 'shard'));
    const files: ParquetFile[] = [];
    const outputs: string[] = [];
    for (const name of shard.result.shards.map((s) => s.shard)) {
      const rel = name.replace(/\.tar$/, '.parquet');
      const file = path.join(layout.root, 'parquet', rel);
      const written = await writeSamplesParquet(
        file,
        rows.filter((r) => r.shard === name),
        { includeImageBytes: false },
      );
      files.push({ file: rel, shard: name, rows: written.rows, bytes: written.bytes, sha256: written.sha256 });
      outputs.push(file);
    }
    for (let part = files.length; ; part++) {
      const stale = layout.parquetFile(unit.subset, unit.index, part);
      if (!(await exists(stale))) break;
      await fs.rm(stale, { force: true });
    }
    return {
      result: {
        subset: unit.subset,
        rows: files.reduce((n, f) => n + f.rows, 0),
        bytes: files.reduce((n, f) => n + f.bytes, 0),
        files,
      },
      outputs,
    };
  });
}
