import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { Subset } from '../../config/release';
import { exists, iterateNdjson, readJson } from '../common/files';
import { runUnitStage, type StageManifest, type Staged, type UnitTask } from '../common/stage';
import { guarded, releaseTree } from '../common/sync';
import type { ShardResult } from '../shard/activity';
import { REQUIRED_ROW_KEYS, writeSamplesParquet, type SampleRow } from './writer';

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

/** The keys the first row of `file` lacks (none for a unit without rows): a shard stage older than the columns. */
async function missingRowKeys(file: string): Promise<string[]> {
  const rows = iterateNdjson<Record<string, unknown>>(file);
  try {
    const first = await rows.next();
    return first.done ? [] : REQUIRED_ROW_KEYS.filter((k) => !(k in first.value));
  } finally {
    await rows.return(undefined);
  }
}

/** One parquet file per shard file, same rows in the same order, for filtering without opening the tars. */
export async function writeParquet(task: UnitTask): Promise<Staged<ParquetResult>> {
  return runUnitStage(task, 'parquet', async ({ layout, unit }) => {
    const rowsFile = path.join(layout.unitDir(unit.unitId), 'samples.ndjson');
    const missing = await missingRowKeys(rowsFile);
    if (missing.length > 0) {
      // Rows of an older engine's shard stage, from before these columns: retrying this stage would meet them again.
      // The shard stage's manifest goes (the store's first: it is the commit), so that starting the release again
      // runs that stage anew for this unit, then this one.
      const manifest = layout.stageManifest(unit.unitId, 'shard');
      const tree = releaseTree(task.release);
      if (tree.remote) await guarded(() => tree.store!.delete(tree.keyOf(manifest)));
      await fs.rm(manifest, { force: true });
      throw ApplicationFailure.create({
        type: 'SamplesOutdated',
        nonRetryable: true,
        message: `unit ${task.unitId}: ${rowsFile} was written by an older engine's shard stage (its rows lack ${missing.join(', ')}); that stage runs again for this unit when the release is started again (npm run release -- start --config <release.json>)`,
      });
    }
    // The shard stage's files, in order (a unit without samples has its one empty shard, and an empty parquet file).
    const shard = await readJson<StageManifest<ShardResult>>(layout.stageManifest(unit.unitId, 'shard'));
    const files: ParquetFile[] = [];
    const outputs: string[] = [];
    // One pass over samples.ndjson, a row at a time (the writer holds one row group): the shard stage writes the
    // rows part after part, so each part's rows are the next ones.
    const rows = iterateNdjson<SampleRow>(rowsFile);
    try {
      let next = await rows.next();
      for (const name of shard.result.shards.map((s) => s.shard)) {
        const rel = name.replace(/\.tar$/, '.parquet');
        const file = path.join(layout.root, 'parquet', rel);
        async function* partRows(): AsyncGenerator<SampleRow> {
          for (; !next.done && next.value.shard === name; next = await rows.next()) yield next.value;
        }
        const written = await writeSamplesParquet(file, partRows(), { includeImageBytes: false });
        files.push({ file: rel, shard: name, rows: written.rows, bytes: written.bytes, sha256: written.sha256 });
        outputs.push(file);
      }
      if (!next.done) {
        // The shard stage wrote both files; rows out of its parts' order are a bug, and a retry would repeat it.
        throw ApplicationFailure.create({
          type: 'SamplesOutOfOrder',
          nonRetryable: true,
          message: `unit ${task.unitId}: ${rowsFile} has row ${next.value.key} of ${next.value.shard} after the rows of the shard stage's parts`,
        });
      }
    } finally {
      await rows.return(undefined); // closes the file when a write failed part way
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
