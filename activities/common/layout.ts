import * as path from 'node:path';
import type { Subset } from '../../config/release';

/** Where every output of a release lives: `<dataDir>/releases/<release>/...` (docs/architecture.md). */
export class ReleaseLayout {
  readonly root: string;
  constructor(
    readonly dataDir: string,
    readonly releaseId: string,
  ) {
    this.root = path.join(dataDir, 'releases', releaseId);
  }
  get planDir(): string {
    return path.join(this.root, 'plan');
  }
  get planFile(): string {
    return path.join(this.planDir, 'plan.json');
  }
  unitFile(unitId: string): string {
    return path.join(this.planDir, 'units', `${unitId}.json`);
  }
  unitDir(unitId: string): string {
    return path.join(this.root, 'units', unitId);
  }
  stageManifest(unitId: string, stage: string): string {
    return path.join(this.unitDir(unitId), 'manifests', `${stage}.json`);
  }
  quarantineFile(unitId: string, stage: string): string {
    return path.join(this.unitDir(unitId), 'quarantine', `${stage}.ndjson`);
  }
  /** Part `part` of unit `index`'s shard (a unit writes part 0, and more parts only when its samples need them). */
  shardFile(subset: Subset, index: number, part = 0): string {
    return path.join(this.root, 'webdataset', subset, `${shardStem(index, part)}.tar`);
  }
  parquetFile(subset: Subset, index: number, part = 0): string {
    return path.join(this.root, 'parquet', subset, `${shardStem(index, part)}.parquet`);
  }
  get reportDir(): string {
    return path.join(this.root, 'report');
  }
  publishDir(relOrAbs: string): string {
    return path.isAbsolute(relOrAbs) ? relOrAbs : path.join(this.root, relOrAbs);
  }
  resolveData(relOrAbs: string): string {
    return path.isAbsolute(relOrAbs) ? relOrAbs : path.join(this.dataDir, relOrAbs);
  }
}

export function shardName(index: number): string {
  return String(index).padStart(6, '0');
}

/**
 * The file stem of part `part` of unit `index`'s shard: `NNNNNN` for the first part (so a unit that fits one shard
 * has the name it always had), `NNNNNN_PPP` for the next ones, which sort right after it.
 */
export function shardStem(index: number, part = 0): string {
  return part === 0 ? shardName(index) : `${shardName(index)}_${String(part).padStart(3, '0')}`;
}

export function unitId(subset: Subset, index: number): string {
  return `${subset}-${shardName(index)}`;
}
