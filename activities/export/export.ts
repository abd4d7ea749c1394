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
 * maxSamplesPerShard samples and maxBytesPerShard bytes. The whole export is written into the sibling folder
 * `<target>.partial-export` and renamed into place at the end, so a crash never leaves a target that looks
 * complete, and the same release and filter always give the same bytes. Running it again with the same input
 * returns the recorded result when the target is intact.
 *
 * Resumption: after every source shard and every closed output shard the export reports a small checkpoint
 * (ExportCheckpoint, carried by the activity's heartbeats): how many output shards of the current subset are
 * closed, and the source position (shard, and selected samples of it to skip) where the open output shard
 * began. Closed output shards stay in the partial folder, each recorded with its sizes and hashes in
 * `.resume/<subset>.ndjson`. Given the last checkpoint back (`resumeFrom`), a later attempt checks those shards
 * on disk, removes whatever was written after the checkpoint, and writes the open output shard again from
 * where it began; source shards before that point are not read again. The bytes are the same as those of an
 * uninterrupted export. Anything that does not match (another export's checkpoint, missing or resized files)
 * starts the export over.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { SUBSETS, type Subset } from '../../config/release';
import { readJsonIfExists, writeFileAtomic, writeJsonAtomic } from '../common/files';
import { shardName } from '../common/layout';
import type { ShardIndexEntry } from '../publish/finalize';
import { iterateSamplesParquet, writeSamplesParquet, type SampleRow } from '../parquet/writer';
import { readTarEntries, splitMemberName } from '../shard/tar-reader';
import {
  DEFAULT_SHARD_MAX_BYTES,
  DEFAULT_SHARD_MAX_SAMPLES,
  ShardLimitError,
  TarShardWriter,
  type TarMember,
} from '../shard/tar-writer';
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
  /**
   * The release's store (its `store`), when it has one: the release's shards and parquet files are pulled from it
   * into this worker's folder (BIOMEDICA_WORK_DIR, else dataDir), and the export is committed to it, export.json last.
   */
  store?: string;
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

/**
 * A bad input (target, filter, limits), a source that is not a finished release, or a damaged one (a shard that
 * disagrees with its parquet file): retrying cannot help.
 */
export class ExportConfigError extends Error {
  override readonly name = 'ExportConfigError';
}

/**
 * Where an export got to, small enough for a heartbeat: everything before it is on disk in the partial folder.
 * Output shards of the subset being written that are closed: `shards` (listed in `.resume/<subset>.ndjson`);
 * the open output shard begins at source shard `source` (an index into the subset's index.json), after `skip`
 * of that shard's selected samples (in tar order).
 */
export interface ExportCheckpoint {
  version: 1;
  /** sha256 of the export's spec (release fingerprint, filter, limits): another export's checkpoint is ignored. */
  spec: string;
  /** Index in SUBSETS of the subset being written; SUBSETS.length once all of them are. */
  subset: number;
  source: number;
  skip: number;
  shards: number;
  /** Source shards and rows scanned before `source`. */
  scanned: { shards: number; rows: number };
  /** Samples and counts of the subsets already finished. */
  samples: number;
  subsets: ExportResult['subsets'];
}

const count = z.number().int().nonnegative();
const CheckpointSchema = z.object({
  version: z.literal(1),
  spec: z.string(),
  subset: count.max(SUBSETS.length),
  source: count,
  skip: count,
  shards: count,
  scanned: z.object({ shards: count, rows: count }),
  samples: count,
  subsets: z.partialRecord(z.enum(SUBSETS), z.object({ shards: count, samples: count, bytes: count })),
});

export interface ExportProgress {
  subset: Subset;
  sourceShard: string;
  scannedRows: number;
  samples: number;
  /** Where a later attempt could continue from, as of this report. */
  checkpoint: ExportCheckpoint;
}

export interface ExportOptions {
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
  /** The last checkpoint of an interrupted attempt (e.g. from the activity's heartbeat details); anything else is ignored. */
  resumeFrom?: unknown;
  /** Called when the export continues from resumeFrom rather than from the start. */
  onResume?: (from: ExportCheckpoint) => void;
  /** Whether to keep the partial folder after a failure, for a retry to resume (default: removed). */
  keepPartialOnFailure?: (err: unknown) => boolean;
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
    throw new ExportConfigError(
      `export target ${JSON.stringify(target)} is not inside the data dir ${root}; use a folder such as exports/<name>`,
    );
  }
  const top = path.relative(root, abs).split(path.sep)[0]!;
  if (RESERVED.includes(top)) {
    throw new ExportConfigError(
      `export target ${JSON.stringify(target)} is inside the data dir's ${top}/ folder; use a folder such as exports/<name>`,
    );
  }
  const realRoot = await fs.realpath(root).catch(() => root);
  const { real, rest } = await realExistingAncestor(abs);
  const realTarget = path.join(real, ...rest);
  if (!within(realRoot, realTarget) || realTarget === realRoot) {
    throw new ExportConfigError(
      `export target ${JSON.stringify(target)} resolves to ${realTarget}, outside the data dir ${realRoot} (a symbolic link?)`,
    );
  }
  return abs;
}

function positiveInt(v: number | undefined, dflt: number, name: string, min = 1): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min)
    throw new ExportConfigError(`${name} must be an integer of at least ${min}, got ${v}`);
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
async function readSource(
  releaseRoot: string,
): Promise<{ indexes: Record<Subset, ShardIndexEntry[]>; fingerprint: string }> {
  const h = createHash('sha256');
  const indexes = {} as Record<Subset, ShardIndexEntry[]>;
  let any = false;
  for (const subset of SUBSETS) {
    const file = path.join(releaseRoot, 'webdataset', subset, 'index.json');
    const text = await fs
      .readFile(file, 'utf8')
      .catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
    const entries = text === null ? [] : (JSON.parse(text) as ShardIndexEntry[]);
    if (text === null) {
      const tars = await fs.readdir(path.join(releaseRoot, 'webdataset', subset)).catch(() => [] as string[]);
      if (tars.some((f) => f.endsWith('.tar')))
        throw new ExportConfigError(
          `release at ${releaseRoot} has ${subset} shards but no ${subset}/index.json: finalize the release first`,
        );
    }
    indexes[subset] = entries;
    any ||= entries.length > 0;
    h.update(`${subset}\n${text ?? ''}\n`);
  }
  if (!any)
    throw new ExportConfigError(
      `no finished release at ${releaseRoot} (no webdataset/<subset>/index.json with shards)`,
    );
  return { indexes, fingerprint: h.digest('hex') };
}

/** The partial folder's record of closed output shards, one file per subset (removed before the rename). */
const RESUME_DIR = '.resume';

const ExportedShardSchema = z.strictObject({
  shard: z.string(),
  samples: count,
  bytes: count,
  sha256: z.string(),
  parquet: z.string(),
  parquetRows: count,
  parquetSha256: z.string(),
});
/** One line of `.resume/<subset>.ndjson`: a closed output shard, with its parquet file's size to check it by. */
const JournalLineSchema = z.strictObject({ shard: ExportedShardSchema, parquetBytes: count });
type JournalLine = z.infer<typeof JournalLineSchema>;

function journalFile(dir: string, subset: Subset): string {
  return path.join(dir, RESUME_DIR, `${subset}.ndjson`);
}

/** Appends a line and syncs it: a checkpoint that counts a closed shard is reported only after this. */
async function appendLineDurably(file: string, line: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const fh = await fs.open(file, 'a');
  try {
    await fh.write(`${line}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The first n lines of a subset's journal, or null when it holds fewer (or they do not parse). */
async function readJournal(dir: string, subset: Subset, n: number): Promise<JournalLine[] | null> {
  if (n === 0) return [];
  const text = await fs.readFile(journalFile(dir, subset), 'utf8').catch(() => null);
  const lines = text?.split('\n').slice(0, -1) ?? [];
  if (lines.length < n) return null;
  const out: JournalLine[] = [];
  for (const line of lines.slice(0, n)) {
    let parsed;
    try {
      parsed = JournalLineSchema.safeParse(JSON.parse(line));
    } catch {
      return null;
    }
    if (!parsed.success) return null;
    out.push(parsed.data);
  }
  return out;
}

async function writeSubsetIndex(dir: string, subset: Subset, shards: ExportedShard[]): Promise<void> {
  const base = path.join(dir, 'webdataset', subset);
  await writeJsonAtomic(
    path.join(base, 'sizes.json'),
    Object.fromEntries(shards.map((s) => [path.posix.basename(s.shard), s.samples])),
  );
  await writeJsonAtomic(path.join(base, 'index.json'), shards);
}

async function removeEmptyDirs(dir: string): Promise<void> {
  for (const d of await fs.readdir(dir, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    const sub = path.join(dir, d.name);
    await removeEmptyDirs(sub);
    if ((await fs.readdir(sub)).length === 0) await fs.rmdir(sub);
  }
}

/** Removes every file of dir but those in keep (paths relative to dir, with '/'), and the folders left empty. */
async function prune(dir: string, keep: ReadonlySet<string>): Promise<void> {
  for (const f of await listFiles(dir)) if (!keep.has(f)) await fs.rm(path.join(dir, f), { force: true });
  await removeEmptyDirs(dir);
}

/** Writes one subset's new shards, rolling over at the limits; parquet rows follow their shard. */
class SubsetOutput {
  private writer: TarShardWriter | null = null;
  private rows: SampleRow[] = [];
  private index: number;
  readonly shards: ExportedShard[];
  samples: number;
  bytes: number;

  /** `closed`: output shards of this subset an earlier attempt closed (on disk and in the journal). */
  constructor(
    private readonly dir: string,
    readonly subset: Subset,
    private readonly limits: { maxSamples: number; maxBytes: number },
    closed: ExportedShard[] = [],
  ) {
    this.shards = [...closed];
    this.index = closed.length;
    this.samples = closed.reduce((n, s) => n + s.samples, 0);
    this.bytes = closed.reduce((n, s) => n + s.bytes, 0);
  }

  /** Whether an output shard is open (holds samples not yet closed). */
  get open(): boolean {
    return this.writer !== null;
  }

  private shardRel(): string {
    return `${this.subset}/${shardName(this.index)}.tar`;
  }

  /** Adds a sample; true when the open shard was full, so it was closed and this sample begins the next one. */
  async add(row: SampleRow, members: TarMember[], mtime: number): Promise<boolean> {
    let rolledOver = false;
    this.writer ??= await TarShardWriter.create(path.join(this.dir, 'webdataset', this.shardRel()), {
      ...this.limits,
      mtime,
    });
    try {
      await this.writer.addSample(row.key, members);
    } catch (err) {
      if (!(err instanceof ShardLimitError)) throw err;
      // A sample larger than a whole shard may hold: no retry can write it.
      if (this.writer.sampleCount === 0) throw new ExportConfigError(err.message);
      await this.closeShard();
      this.writer = await TarShardWriter.create(path.join(this.dir, 'webdataset', this.shardRel()), {
        ...this.limits,
        mtime,
      });
      await this.writer.addSample(row.key, members);
      rolledOver = true;
    }
    this.rows.push({ ...row, shard: this.shardRel() });
    this.samples++;
    return rolledOver;
  }

  async closeShard(): Promise<void> {
    if (!this.writer) return;
    const closed = await this.writer.close();
    const parquetRel = `${this.subset}/${shardName(this.index)}.parquet`;
    const pq = await writeSamplesParquet(path.join(this.dir, 'parquet', parquetRel), this.rows);
    const shard: ExportedShard = {
      shard: this.shardRel(),
      samples: closed.samples,
      bytes: closed.bytes,
      sha256: closed.sha256,
      parquet: parquetRel,
      parquetRows: pq.rows,
      parquetSha256: pq.sha256,
    };
    await appendLineDurably(
      journalFile(this.dir, this.subset),
      JSON.stringify({ shard, parquetBytes: pq.bytes } satisfies JournalLine),
    );
    this.shards.push(shard);
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
    if (this.shards.length > 0) await writeSubsetIndex(this.dir, this.subset, this.shards);
  }
}

type AddSample = (row: SampleRow, members: TarMember[], mtime: number, ordinal: number) => Promise<void>;

/**
 * Copies the selected samples of one source shard, in shard order, checking each against its parquet row. The
 * first `skip` of them (in tar order: earlier output shards hold them) are passed over without reading their
 * bytes; `ordinal` counts the selected samples of the shard, those passed over included.
 */
async function copySamples(
  tarFile: string,
  selected: Map<string, SampleRow>,
  skip: number,
  signal: AbortSignal | undefined,
  add: AddSample,
): Promise<void> {
  const found = new Set<string>();
  let met = 0;
  let current: { key: string; row: SampleRow; members: TarMember[]; mtime: number; ordinal: number } | null = null;
  const flush = async (): Promise<void> => {
    if (!current) return;
    const { key, row, members, mtime, ordinal } = current;
    current = null;
    found.add(key);
    if (ordinal < skip) return;
    const jpg = members.find((m) => m.ext === 'jpg');
    if (!jpg) throw new ExportConfigError(`${tarFile}: sample ${key} has no .jpg member`);
    const sha = createHash('sha256').update(jpg.data).digest('hex');
    if (sha !== row.image_sha256)
      throw new ExportConfigError(
        `${tarFile}: ${key}.jpg does not match the parquet row's image_sha256 (release outputs out of step?)`,
      );
    await add(row, members, mtime, ordinal);
  };
  for await (const entry of readTarEntries(tarFile)) {
    const parts = splitMemberName(entry.name);
    if (!parts) continue;
    if (current && current.key !== parts.key) await flush();
    const row = selected.get(parts.key);
    if (!row) continue;
    if (found.has(parts.key))
      throw new ExportConfigError(`${tarFile}: members of sample ${parts.key} are not contiguous`);
    if (signal?.aborted) throw signal.reason ?? new Error('export cancelled');
    current ??= { key: parts.key, row, members: [], mtime: entry.mtime, ordinal: met++ };
    if (current.ordinal >= skip) current.members.push({ ext: parts.ext, data: await entry.read() });
  }
  await flush();
  if (found.size !== selected.size) {
    const missing = [...selected.keys()].filter((k) => !found.has(k));
    throw new ExportConfigError(
      `${tarFile}: ${missing.length} samples of its parquet file are not in the tar (first: ${missing[0]})`,
    );
  }
}

function specHashOf(spec: ExportSpec): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex');
}

function parseCheckpoint(value: unknown, specHash: string): ExportCheckpoint | null {
  const parsed = CheckpointSchema.safeParse(value);
  return parsed.success && parsed.data.spec === specHash ? (parsed.data as ExportCheckpoint) : null;
}

/** Where the export stands when it (re)starts. */
type Start =
  | { complete: ExportRecord }
  | {
      complete?: undefined;
      subset: number;
      source: number;
      skip: number;
      closed: ExportedShard[];
      result: Omit<ExportResult, 'reused' | 'target'>;
    };

/**
 * Brings the partial folder back to exactly what the checkpoint counts: its closed output shards (checked
 * against their recorded sizes) and the finished subsets' index files stay, everything written after the
 * checkpoint goes. Null when the folder does not hold what the checkpoint says (the export starts over).
 */
/** Removes `<target>.partial-*` beside the target (leftovers of crashed attempts are ours by name), but `keep`. */
async function removeLeftovers(target: string, keep: string | null): Promise<void> {
  const parent = path.dirname(target);
  for (const name of await fs.readdir(parent).catch(() => [] as string[])) {
    const p = path.join(parent, name);
    if (name.startsWith(`${path.basename(target)}.partial-`) && p !== keep)
      await fs.rm(p, { recursive: true, force: true });
  }
}

async function restoreWork(
  work: string,
  cp: ExportCheckpoint,
  spec: ExportSpec,
  source: Record<Subset, ShardIndexEntry[]>,
  filter: ExportFilter,
): Promise<Start | null> {
  if (!(await fs.stat(work).catch(() => null))?.isDirectory()) return null;
  // Killed between writing export.json and the rename: the folder is complete.
  const record = await readJsonIfExists<ExportRecord>(path.join(work, 'export.json')).catch(() => null);
  if (record && JSON.stringify(record.spec) === JSON.stringify(spec) && (await intact(work, record.files))) {
    await prune(work, new Set([...record.files.map((f) => f.path), 'export.json']));
    return { complete: record };
  }
  if (cp.subset < SUBSETS.length && cp.source > source[SUBSETS[cp.subset]!].length) return null;

  const keep = new Set<string>();
  const journals: [Subset, JournalLine[]][] = [];
  let closed: ExportedShard[] = [];
  for (let i = 0; i <= Math.min(cp.subset, SUBSETS.length - 1); i++) {
    const subset = SUBSETS[i]!;
    const done = i < cp.subset;
    const lines = await readJournal(work, subset, done ? (cp.subsets[subset]?.shards ?? 0) : cp.shards);
    if (!lines) return null;
    // Line k must be output shard k of the subset: an attempt that outlived its timeout may have appended to the
    // journal after a retry rewrote it (a duplicate or a gap), and such a journal is not resumed from.
    if (
      lines.some(
        (l, k) =>
          l.shard.shard !== `${subset}/${shardName(k)}.tar` || l.shard.parquet !== `${subset}/${shardName(k)}.parquet`,
      )
    )
      return null;
    for (const { shard, parquetBytes } of lines) {
      for (const [rel, bytes] of [
        [`webdataset/${shard.shard}`, shard.bytes],
        [`parquet/${shard.parquet}`, parquetBytes],
      ] as const) {
        if ((await fs.stat(path.join(work, rel)).catch(() => null))?.size !== bytes) return null;
        keep.add(rel);
      }
    }
    const shards = lines.map((l) => l.shard);
    if (done && shards.reduce((a, s) => a + s.samples, 0) !== (cp.subsets[subset]?.samples ?? 0)) return null;
    if (!done) closed = shards;
    if (lines.length > 0) {
      journals.push([subset, lines]);
      keep.add(`${RESUME_DIR}/${subset}.ndjson`);
    }
  }

  // What the attempt wrote after its checkpoint goes: later output shards, temporary files, export.json.
  await prune(work, keep);
  for (const [subset, lines] of journals) {
    await writeFileAtomic(journalFile(work, subset), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    if (SUBSETS.indexOf(subset) < cp.subset)
      await writeSubsetIndex(
        work,
        subset,
        lines.map((l) => l.shard),
      );
  }
  return {
    subset: cp.subset,
    source: cp.source,
    skip: cp.skip,
    closed,
    result: {
      releaseId: spec.releaseId,
      filter,
      scanned: { ...cp.scanned },
      samples: cp.samples,
      subsets: structuredClone(cp.subsets),
    },
  };
}

export async function exportSubset(input: ExportInput, opts: ExportOptions = {}): Promise<ExportResult> {
  if (!input || typeof input.dataDir !== 'string' || !path.isAbsolute(input.dataDir))
    throw new ExportConfigError('dataDir must be an absolute path');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(input.releaseId ?? ''))
    throw new ExportConfigError(`invalid release id ${JSON.stringify(input.releaseId)}`);
  const filter = parseFilter(input.filter);
  const predicate = compileFilter(filter);
  const limits = {
    maxSamples: positiveInt(input.maxSamplesPerShard, DEFAULT_SHARD_MAX_SAMPLES, 'maxSamplesPerShard'),
    maxBytes: positiveInt(input.maxBytesPerShard, DEFAULT_SHARD_MAX_BYTES, 'maxBytesPerShard', 10_240),
  };
  const target = await resolveExportTarget(input.dataDir, input.target);
  const releaseRoot = path.join(path.resolve(input.dataDir), 'releases', input.releaseId);
  const source = await readSource(releaseRoot);
  const spec: ExportSpec = {
    releaseId: input.releaseId,
    filter,
    maxSamplesPerShard: limits.maxSamples,
    maxBytesPerShard: limits.maxBytes,
    source: source.fingerprint,
  };
  const specHash = specHashOf(spec);

  // An earlier export at the target: the same input and intact gives its result; anything else needs overwrite.
  const targetStat = await fs.stat(target).catch(() => null);
  if (targetStat) {
    if (!targetStat.isDirectory()) throw new ExportConfigError(`export target ${target} exists and is not a folder`);
    const earlier = await readJsonIfExists<ExportRecord>(path.join(target, 'export.json'));
    if (earlier && JSON.stringify(earlier.spec) === JSON.stringify(spec) && (await intact(target, earlier.files))) {
      // What an attempt killed after its swap left beside the target (the replaced export, a work folder) goes.
      await removeLeftovers(target, null);
      return { ...earlier.result, target, reused: true };
    }
    const empty = (await fs.readdir(target)).length === 0;
    if (!empty && !earlier)
      throw new ExportConfigError(
        `export target ${target} exists and is not an export folder (no export.json); choose another target`,
      );
    if (!empty && !input.overwrite)
      throw new ExportConfigError(`export target ${target} holds a different export; pass overwrite to replace it`);
  }

  // The export is written beside the target, in a folder a retry finds again. Leftovers of crashed attempts
  // are ours by name; the folder of the attempt being resumed stays.
  const work = `${target}.partial-export`;
  const resumeFrom = parseCheckpoint(opts.resumeFrom, specHash);
  await fs.mkdir(path.dirname(target), { recursive: true });
  await removeLeftovers(target, resumeFrom ? work : null);
  let start = resumeFrom ? await restoreWork(work, resumeFrom, spec, source.indexes, filter) : null;
  if (start && resumeFrom) opts.onResume?.(resumeFrom);
  if (!start) {
    await fs.rm(work, { recursive: true, force: true });
    await fs.mkdir(work);
    start = {
      subset: 0,
      source: 0,
      skip: 0,
      closed: [],
      result: { releaseId: input.releaseId, filter, scanned: { shards: 0, rows: 0 }, samples: 0, subsets: {} },
    };
  }

  let result = start.complete?.result;
  const writing: { out: SubsetOutput | null } = { out: null };
  try {
    if (!start.complete) {
      result = await writeSubsets(
        work,
        start,
        { filter, predicate, limits, releaseRoot, indexes: source.indexes, specHash },
        opts,
        writing,
      );
      const files = await Promise.all(
        (await listFiles(work))
          .filter((p) => !p.startsWith(`${RESUME_DIR}/`))
          .map(async (p) => ({ path: p, bytes: (await fs.stat(path.join(work, p))).size })),
      );
      const record: ExportRecord = { version: 1, spec, result, files };
      await writeJsonAtomic(path.join(work, 'export.json'), record);
    }
    await fs.rm(path.join(work, RESUME_DIR), { recursive: true, force: true });

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
    await writing.out?.abort();
    if (!opts.keepPartialOnFailure?.(err)) await fs.rm(work, { recursive: true, force: true });
    throw err;
  }
  return { ...result!, target, reused: false };
}

interface ExportPlan {
  filter: ExportFilter;
  predicate: (row: SampleRow) => boolean;
  limits: { maxSamples: number; maxBytes: number };
  releaseRoot: string;
  indexes: Record<Subset, ShardIndexEntry[]>;
  specHash: string;
}

/** Writes the subsets from `start` on into `work`, reporting a checkpoint after every source and output shard. */
async function writeSubsets(
  work: string,
  start: Exclude<Start, { complete: ExportRecord }>,
  plan: ExportPlan,
  opts: ExportOptions,
  writing: { out: SubsetOutput | null },
): Promise<Omit<ExportResult, 'reused' | 'target'>> {
  const result = start.result;
  const checkpointAt = (
    subset: number,
    from: { source: number; skip: number; scanned: ExportCheckpoint['scanned'] },
    shards: number,
  ): ExportCheckpoint => ({
    version: 1,
    spec: plan.specHash,
    subset,
    source: from.source,
    skip: from.skip,
    shards,
    scanned: { ...from.scanned },
    samples: result.samples,
    subsets: { ...result.subsets },
  });
  for (let si = start.subset; si < SUBSETS.length; si++) {
    const subset = SUBSETS[si]!;
    if (plan.filter.subsets && !plan.filter.subsets.includes(subset)) continue;
    const resumed = si === start.subset ? start : null;
    const out = new SubsetOutput(work, subset, plan.limits, resumed?.closed ?? []);
    writing.out = out;
    const entries = plan.indexes[subset];
    // Where the open output shard begins: a later attempt writes it again from there.
    let from = { source: resumed?.source ?? 0, skip: resumed?.skip ?? 0, scanned: { ...result.scanned } };
    for (let j = from.source; j < entries.length; j++) {
      const entry = entries[j]!;
      const scannedBefore = { ...result.scanned };
      const report = (): void =>
        opts.onProgress?.({
          subset,
          sourceShard: entry.shard,
          scannedRows: result.scanned.rows,
          samples: result.samples + out.samples,
          checkpoint: checkpointAt(si, from, out.shards.length),
        });
      const selected = new Map<string, SampleRow>();
      for await (const row of iterateSamplesParquet(path.join(plan.releaseRoot, 'parquet', entry.parquet))) {
        result.scanned.rows++;
        if (plan.predicate(row)) selected.set(row.key, row);
        if (result.scanned.rows % 1000 === 0) report();
        if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('export cancelled');
      }
      result.scanned.shards++;
      const skip = j === resumed?.source ? resumed.skip : 0;
      if (selected.size > 0) {
        await copySamples(
          path.join(plan.releaseRoot, 'webdataset', entry.shard),
          selected,
          skip,
          opts.signal,
          async (row, members, mtime, ordinal) => {
            if (await out.add(row, members, mtime)) from = { source: j, skip: ordinal, scanned: scannedBefore };
            report();
          },
        );
      }
      if (!out.open) from = { source: j + 1, skip: 0, scanned: { ...result.scanned } };
      report();
    }
    await out.finish();
    if (out.shards.length > 0)
      result.subsets[subset] = { shards: out.shards.length, samples: out.samples, bytes: out.bytes };
    result.samples += out.samples;
    opts.onProgress?.({
      subset,
      sourceShard: entries.at(-1)?.shard ?? '',
      scannedRows: result.scanned.rows,
      samples: result.samples,
      checkpoint: checkpointAt(si + 1, { source: 0, skip: 0, scanned: result.scanned }, 0),
    });
  }
  return result;
}
