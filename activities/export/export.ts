/**
 * Subset export: select samples of a finished release by a predicate over its parquet files and write a new
 * WebDataset of only those samples (tar shards + sizes.json + index.json, and one parquet file per new shard),
 * copying every member's bytes from the release's tars. Pure code that knows nothing of Temporal; the activity
 * (./activity.ts) adds heartbeats and turns configuration errors into non-retryable failures.
 *
 * Layout of the target folder (inside the data dir, never under its releases/, models/, temporal/ or
 * sample-mirror/ folders):
 *
 *   <target>/webdataset/<subset>/NNNNNN.tar, sizes.json, index.json
 *   <target>/parquet/<subset>/NNNNNN.parquet
 *   <target>/export.json        what was exported from what, written last
 *
 * New shards are numbered from 000000 per subset and filled in release order (subset, shard, sample) up to
 * maxSamplesPerShard samples and maxBytesPerShard bytes. The whole export is written into a sibling
 * `<target>.partial-*` folder and renamed into place at the end, so a crash never leaves a target that looks
 * complete, and the same release and filter always give the same bytes. Running it again with the same input
 * returns the recorded result when the target is intact.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { SUBSETS, type Subset } from '../../config/release';
import { readJsonIfExists, writeJsonAtomic } from '../common/files';
import { shardName } from '../common/layout';
import type { ShardIndexEntry } from '../publish/finalize';
import { iterateSamplesParquet, writeSamplesParquet, type SampleRow } from '../parquet/writer';
import { readTarEntries, splitMemberName } from '../shard/tar-reader';
import { DEFAULT_SHARD_MAX_BYTES, DEFAULT_SHARD_MAX_SAMPLES, ShardLimitError, TarShardWriter, type TarMember } from '../shard/tar-writer';
import { compileFilter, ExportFilterSchema, type ExportFilter, type ExportFilterArgs } from './filter';

export interface ExportInput {
  /** The data dir of the release (absolute). */
  dataDir: string;
  releaseId: string;
  /** Output folder: relative to the data dir, or absolute inside it. */
  target: string;
  filter: ExportFilterArgs;
  /** Default 10,000 (the published limit). */
  maxSamplesPerShard?: number;
  /** Default 1,000,000,000 bytes per tar file. */
  maxBytesPerShard?: number;
  /** Replace an earlier export at target (only a folder that holds an export.json is ever replaced). */
  overwrite?: boolean;
}

export interface ExportedShard {
  shard: string;
  samples: number;
  bytes: number;
  sha256: string;
  parquet: string;
  parquetRows: number;
  parquetSha256: string;
}

export interface ExportResult {
  releaseId: string;
  /** Absolute path of the export folder. */
  target: string;
  filter: ExportFilter;
  scanned: { shards: number; rows: number };
  samples: number;
  subsets: Partial<Record<Subset, { shards: number; samples: number; bytes: number }>>;
  /** True when an intact earlier export of the same input was found and returned unchanged. */
  reused: boolean;
}

/** What export.json records: the result plus every file with its size, to prove the folder intact. */
interface ExportRecord {
  version: 1;
  spec: ExportSpec;
  result: Omit<ExportResult, 'reused' | 'target'>;
  files: { path: string; bytes: number }[];
}

interface ExportSpec {
  releaseId: string;
  filter: ExportFilter;
  maxSamplesPerShard: number;
  maxBytesPerShard: number;
  /** sha256 of the release's shard indexes: a rebuilt release is a different source. */
  source: string;
}

/** A bad input (target, filter, limits) or a source that is not a finished release: retrying cannot help. */
export class ExportConfigError extends Error {
  override readonly name = 'ExportConfigError';
}

export interface ExportProgress {
  subset: Subset;
  sourceShard: string;
  scannedRows: number;
  samples: number;
}

export interface ExportOptions {
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
}

/** Top-level folders of the data dir an export may never write into. */
const RESERVED = ['releases', 'models', 'temporal', 'sample-mirror'];

function within(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

/** The deepest existing ancestor of p (p itself when it exists), with symlinks resolved. */
async function realExistingAncestor(p: string): Promise<{ real: string; rest: string[] }> {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return { real: await fs.realpath(cur), rest };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const parent = path.dirname(cur);
      if (parent === cur) throw err;
      rest.unshift(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * The absolute export folder for `target`, refusing anything outside the data dir (`..`, absolute paths
 * elsewhere, symlinks that lead out), the data dir itself and its reserved folders.
 */
export async function resolveExportTarget(dataDir: string, target: string): Promise<string> {
  if (!target || target.trim() === '') throw new ExportConfigError('export target is empty');
  const root = path.resolve(dataDir);
  const abs = path.resolve(root, target);
  if (!within(root, abs) || abs === root) {
    throw new ExportConfigError(`export target ${JSON.stringify(target)} is not inside the data dir ${root}; use a folder such as exports/<name>`);
  }
  const top = path.relative(root, abs).split(path.sep)[0]!;
  if (RESERVED.includes(top)) {
    throw new ExportConfigError(`export target ${JSON.stringify(target)} is inside the data dir's ${top}/ folder; use a folder such as exports/<name>`);
  }
  const realRoot = await fs.realpath(root).catch(() => root);
  const { real, rest } = await realExistingAncestor(abs);
  const realTarget = path.join(real, ...rest);
  if (!within(realRoot, realTarget) || realTarget === realRoot) {
    throw new ExportConfigError(`export target ${JSON.stringify(target)} resolves to ${realTarget}, outside the data dir ${realRoot} (a symbolic link?)`);
  }
  return abs;
}

function positiveInt(v: number | undefined, dflt: number, name: string, min = 1): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min) throw new ExportConfigError(`${name} must be an integer of at least ${min}, got ${v}`);
  return x;
}

function parseFilter(args: ExportFilterArgs): ExportFilter {
  const parsed = ExportFilterSchema.safeParse(args ?? {});
  if (!parsed.success) throw new ExportConfigError(`invalid export filter: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (d.isFile()) out.push(path.relative(dir, path.join(d.parentPath, d.name)).split(path.sep).join('/'));
  }
  return out.sort();
}

async function intact(dir: string, files: ExportRecord['files']): Promise<boolean> {
  for (const f of files) {
    const st = await fs.stat(path.join(dir, f.path)).catch(() => null);
    if (!st || st.size !== f.bytes) return false;
  }
  return true;
}

/** The release's shard index per subset (written by finalizeRelease), and a fingerprint of all of them. */
async function readSource(releaseRoot: string): Promise<{ indexes: Record<Subset, ShardIndexEntry[]>; fingerprint: string }> {
  const h = createHash('sha256');
  const indexes = {} as Record<Subset, ShardIndexEntry[]>;
  let any = false;
  for (const subset of SUBSETS) {
    const file = path.join(releaseRoot, 'webdataset', subset, 'index.json');
    const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
    const entries = text === null ? [] : (JSON.parse(text) as ShardIndexEntry[]);
    if (text === null) {
      const tars = await fs.readdir(path.join(releaseRoot, 'webdataset', subset)).catch(() => [] as string[]);
      if (tars.some((f) => f.endsWith('.tar'))) throw new ExportConfigError(`release at ${releaseRoot} has ${subset} shards but no ${subset}/index.json: finalize the release first`);
    }
    indexes[subset] = entries;
    any ||= entries.length > 0;
    h.update(`${subset}\n${text ?? ''}\n`);
  }
  if (!any) throw new ExportConfigError(`no finished release at ${releaseRoot} (no webdataset/<subset>/index.json with shards)`);
  return { indexes, fingerprint: h.digest('hex') };
}

/** Writes one subset's new shards, rolling over at the limits; parquet rows follow their shard. */
class SubsetOutput {
  private writer: TarShardWriter | null = null;
  private rows: SampleRow[] = [];
  private index = 0;
  readonly shards: ExportedShard[] = [];
  samples = 0;
  bytes = 0;

  constructor(
    private readonly dir: string,
    readonly subset: Subset,
    private readonly limits: { maxSamples: number; maxBytes: number },
  ) {}

  private shardRel(): string {
    return `${this.subset}/${shardName(this.index)}.tar`;
  }

  async add(row: SampleRow, members: TarMember[], mtime: number): Promise<void> {
    this.writer ??= await TarShardWriter.create(path.join(this.dir, 'webdataset', this.shardRel()), { ...this.limits, mtime });
    try {
      await this.writer.addSample(row.key, members);
    } catch (err) {
      if (!(err instanceof ShardLimitError) || this.writer.sampleCount === 0) throw err;
      await this.closeShard();
      this.writer = await TarShardWriter.create(path.join(this.dir, 'webdataset', this.shardRel()), { ...this.limits, mtime });
      await this.writer.addSample(row.key, members);
    }
    this.rows.push({ ...row, shard: this.shardRel() });
    this.samples++;
  }

  async closeShard(): Promise<void> {
    if (!this.writer) return;
    const closed = await this.writer.close();
    const parquetRel = `${this.subset}/${shardName(this.index)}.parquet`;
    const pq = await writeSamplesParquet(path.join(this.dir, 'parquet', parquetRel), this.rows);
    this.shards.push({ shard: this.shardRel(), samples: closed.samples, bytes: closed.bytes, sha256: closed.sha256, parquet: parquetRel, parquetRows: pq.rows, parquetSha256: pq.sha256 });
    this.bytes += closed.bytes;
    this.writer = null;
    this.rows = [];
    this.index++;
  }

  async abort(): Promise<void> {
    await this.writer?.abort();
    this.writer = null;
  }

  async finish(): Promise<void> {
    await this.closeShard();
    if (this.shards.length === 0) return;
    const base = path.join(this.dir, 'webdataset', this.subset);
    await writeJsonAtomic(path.join(base, 'sizes.json'), Object.fromEntries(this.shards.map((s) => [path.posix.basename(s.shard), s.samples])));
    await writeJsonAtomic(path.join(base, 'index.json'), this.shards);
  }
}

/** Copies the selected samples of one source shard, in shard order, checking each against its parquet row. */
async function copySamples(tarFile: string, selected: Map<string, SampleRow>, out: SubsetOutput, signal: AbortSignal | undefined, onSample: () => void): Promise<void> {
  const found = new Set<string>();
  let current: { key: string; row: SampleRow; members: TarMember[]; mtime: number } | null = null;
  const flush = async (): Promise<void> => {
    if (!current) return;
    const { key, row, members, mtime } = current;
    current = null;
    const jpg = members.find((m) => m.ext === 'jpg');
    if (!jpg) throw new Error(`${tarFile}: sample ${key} has no .jpg member`);
    const sha = createHash('sha256').update(jpg.data).digest('hex');
    if (sha !== row.image_sha256) throw new Error(`${tarFile}: ${key}.jpg does not match the parquet row's image_sha256 (release outputs out of step?)`);
    found.add(key);
    await out.add(row, members, mtime);
    onSample();
  };
  for await (const entry of readTarEntries(tarFile)) {
    const parts = splitMemberName(entry.name);
    if (!parts) continue;
    if (current && current.key !== parts.key) await flush();
    const row = selected.get(parts.key);
    if (!row) continue;
    if (found.has(parts.key)) throw new Error(`${tarFile}: members of sample ${parts.key} are not contiguous`);
    if (signal?.aborted) throw signal.reason ?? new Error('export cancelled');
    current ??= { key: parts.key, row, members: [], mtime: entry.mtime };
    current.members.push({ ext: parts.ext, data: await entry.read() });
  }
  await flush();
  if (found.size !== selected.size) {
    const missing = [...selected.keys()].filter((k) => !found.has(k));
    throw new Error(`${tarFile}: ${missing.length} samples of its parquet file are not in the tar (first: ${missing[0]})`);
  }
}

export async function exportSubset(input: ExportInput, opts: ExportOptions = {}): Promise<ExportResult> {
  if (!input || typeof input.dataDir !== 'string' || !path.isAbsolute(input.dataDir)) throw new ExportConfigError('dataDir must be an absolute path');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(input.releaseId ?? '')) throw new ExportConfigError(`invalid release id ${JSON.stringify(input.releaseId)}`);
  const filter = parseFilter(input.filter);
  const predicate = compileFilter(filter);
  const limits = {
    maxSamples: positiveInt(input.maxSamplesPerShard, DEFAULT_SHARD_MAX_SAMPLES, 'maxSamplesPerShard'),
    maxBytes: positiveInt(input.maxBytesPerShard, DEFAULT_SHARD_MAX_BYTES, 'maxBytesPerShard', 10_240),
  };
  const target = await resolveExportTarget(input.dataDir, input.target);
  const releaseRoot = path.join(path.resolve(input.dataDir), 'releases', input.releaseId);
  const source = await readSource(releaseRoot);
  const spec: ExportSpec = { releaseId: input.releaseId, filter, maxSamplesPerShard: limits.maxSamples, maxBytesPerShard: limits.maxBytes, source: source.fingerprint };

  // An earlier export at the target: the same input and intact gives its result; anything else needs overwrite.
  const targetStat = await fs.stat(target).catch(() => null);
  if (targetStat) {
    if (!targetStat.isDirectory()) throw new ExportConfigError(`export target ${target} exists and is not a folder`);
    const earlier = await readJsonIfExists<ExportRecord>(path.join(target, 'export.json'));
    if (earlier && JSON.stringify(earlier.spec) === JSON.stringify(spec) && (await intact(target, earlier.files))) {
      return { ...earlier.result, target, reused: true };
    }
    const empty = (await fs.readdir(target)).length === 0;
    if (!empty && !earlier) throw new ExportConfigError(`export target ${target} exists and is not an export folder (no export.json); choose another target`);
    if (!empty && !input.overwrite) throw new ExportConfigError(`export target ${target} holds a different export; pass overwrite to replace it`);
  }

  // Leftovers of crashed attempts are ours by name; the new attempt writes beside the target.
  const parent = path.dirname(target);
  await fs.mkdir(parent, { recursive: true });
  for (const name of await fs.readdir(parent)) {
    if (name.startsWith(`${path.basename(target)}.partial-`)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
  }
  const work = `${target}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await fs.mkdir(work);

  const result: Omit<ExportResult, 'reused' | 'target'> = { releaseId: input.releaseId, filter, scanned: { shards: 0, rows: 0 }, samples: 0, subsets: {} };
  let out: SubsetOutput | null = null;
  try {
    for (const subset of SUBSETS) {
      if (filter.subsets && !filter.subsets.includes(subset)) continue;
      out = new SubsetOutput(work, subset, limits);
      for (const entry of source.indexes[subset]) {
        const selected = new Map<string, SampleRow>();
        for await (const row of iterateSamplesParquet(path.join(releaseRoot, 'parquet', entry.parquet))) {
          result.scanned.rows++;
          if (predicate(row)) selected.set(row.key, row);
          if (result.scanned.rows % 1000 === 0) opts.onProgress?.({ subset, sourceShard: entry.shard, scannedRows: result.scanned.rows, samples: result.samples + out.samples });
          if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('export cancelled');
        }
        result.scanned.shards++;
        const progress = (): void => opts.onProgress?.({ subset, sourceShard: entry.shard, scannedRows: result.scanned.rows, samples: result.samples + out!.samples });
        if (selected.size > 0) await copySamples(path.join(releaseRoot, 'webdataset', entry.shard), selected, out, opts.signal, progress);
        progress();
      }
      await out.finish();
      if (out.shards.length > 0) result.subsets[subset] = { shards: out.shards.length, samples: out.samples, bytes: out.bytes };
      result.samples += out.samples;
      out = null;
    }
    const files = await Promise.all((await listFiles(work)).map(async (p) => ({ path: p, bytes: (await fs.stat(path.join(work, p))).size })));
    const record: ExportRecord = { version: 1, spec, result, files };
    await writeJsonAtomic(path.join(work, 'export.json'), record);

    // Swap into place: an earlier export (only with overwrite, checked above) is moved aside, then removed.
    if (await fs.stat(target).catch(() => null)) {
      const old = `${target}.partial-old-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
      await fs.rename(target, old);
      await fs.rename(work, target);
      await fs.rm(old, { recursive: true, force: true });
    } else {
      await fs.rename(work, target);
    }
  } catch (err) {
    await out?.abort();
    await fs.rm(work, { recursive: true, force: true });
    throw err;
  }
  return { ...result, target, reused: false };
}
