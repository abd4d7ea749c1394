import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { SUBSETS, type Subset } from '../../config/release';
import { exists, writeFileAtomic } from '../common/files';
import { mapLimit } from '../common/stage';
import { licenseGroup } from './license';
import {
  selectVersions,
  UnitCutterBase,
  type Exclusion,
  type PlannedArticle,
  type PlannedUnit,
  type VersionFacts,
} from './plan';

/** Tab, CR and newline would break the spill files' line format. */
const CONTROL_IN_FIELD = /[\t\n\r]/;

/**
 * The streaming planner. Memory is bounded by one bucket of PMCIDs, never by the number of inventory rows:
 *
 * pass 1  rows stream in (inventory csv.gz, or the legacy file list) and are appended, unparsed beyond their
 *         identity, to one spill file per bucket of BUCKET_SPAN consecutive PMCIDs (plan/work/rows-NNNNNN.tsv);
 * pass 2  bucket by bucket, in PMCID order: the facts of each row are taken from the previous release's facts
 *         when its ETag is unchanged, from this plan's own checkpoint when an interrupted attempt already read
 *         them, and are otherwise resolved (one metadata GET; inline for the legacy list); the bucket's facts are
 *         written to plan/facts/NNNNNN.tsv (the checkpoint, and the next release's previous facts); every
 *         PMCID's versions are selected (all versions of a PMCID share a bucket) and the selected articles,
 *         already in PMCID order, go through one unit cutter per subset that writes each unit as it closes.
 *
 * Facts reused by ETag carry flags only; the article of a version that is selected again is read back from the
 * unit files of the plan it came from (the previous release's, or this plan's own interrupted attempt's, kept
 * aside in plan/units.resume), and checked to carry the same ETag. When no such article is found (the version was
 * superseded then, or its unit was never written), its metadata is read again.
 *
 * Exclusions are appended to plan/excluded.ndjson in the same order, so the plan's outputs are deterministic.
 */
export const BUCKET_SPAN = 1 << 15;
const FLUSH_BYTES = 64 * 1024;

export interface PlanRow {
  pmcid: number;
  version: number;
  key: string;
  etag: string;
  /** Facts carried by the row itself (the legacy list); null when they must be resolved (a metadata GET). */
  inline: VersionFacts | null;
}

export interface PlanChanges {
  previousRelease: string | null;
  /** Versions (keys) absent from the previous plan's facts. */
  new: number;
  /** Versions whose ETag differs from the previous plan's. */
  changed: number;
  /** Versions with the same ETag: their facts were reused, no metadata GET. */
  unchanged: number;
  /** Versions in the previous plan that are gone from the inventory. */
  removed: number;
  /** Versions retracted now that the previous plan knew as not retracted. */
  newlyRetracted: number;
}

export interface PlannerResult {
  rows: number;
  selected: number;
  excluded: Record<string, number>;
  subsets: Record<Subset, { units: number; articles: number; figureImages: number }>;
  planHash: string;
  /** Rows whose facts had to be resolved (metadata GETs). */
  resolved: number;
  /** Seconds spent in each part of pass 2, summed over buckets (for benchmarks; not part of any summary). */
  seconds: {
    readRows: number;
    facts: number;
    /** Selection, unit cutting, and hashing and handing over the unit files (includes unitJson and ioWait). */
    selectAndCut: number;
    writeFacts: number;
    /** Serialising the selected articles as unit JSON. */
    unitJson: number;
    /** Waiting for the disk (more writes queued than may be in flight). */
    ioWait: number;
  };
  /** The same parts in CPU seconds of this process (all threads): comparable on a busy machine, where wall time is not. */
  cpuSeconds: PlannerResult['seconds'];
  changes: PlanChanges;
  /** Selected articles in `other` by their exact license code ('(none)' for null): the code is always recorded. */
  otherLicenses: Record<string, number>;
}

export interface PlannerConfig {
  planDir: string;
  unitFile: (unitId: string) => string;
  limits: { maxArticles: number; maxImages: number };
  previous: { releaseId: string; factsDir: string } | null;
  /** Facts of a row that has none inline and none to reuse. Retryable failures should throw (the plan fails and resumes). */
  resolve: (row: PlanRow) => Promise<VersionFacts>;
  /** Benchmarks only: facts from an in-process source, called in place of `resolve` without a promise per row. */
  resolveSync?: (row: PlanRow) => VersionFacts;
  concurrency: number;
  heartbeat?: (details: Record<string, unknown>) => void;
}

const MAX_LICENSE_CODES = 50;
/** Rows of a bucket taken through pass 2 together (rounded up to whole PMCIDs). */
const SLICE_ROWS = 2048;

function rounded(seconds: PlannerResult['seconds']): PlannerResult['seconds'] {
  return Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, +v.toFixed(2)])) as PlannerResult['seconds'];
}

function bucketName(b: number): string {
  return String(b).padStart(6, '0');
}

function bucketIds(dir: string, re: RegExp): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => re.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
}

/**
 * The facts files (plan/facts/NNNNNN.tsv, one line per readable version of the bucket) keep what selection needs,
 * never the planned article itself: `pmcid, version, flags (1 oa, 2 retracted), etag, key`. The planned articles of
 * the selected versions are in the plan's unit files already; a later plan reads them back from there (see
 * UnitArticleStore), so a plan writes each article once.
 */
export function encodeFacts(f: Pick<VersionFacts, 'pmcid' | 'version' | 'oa' | 'retracted' | 'etag' | 'key'>): string {
  // The cloud key `metadata/PMC<id>.<v>.json` follows from the identity: stored empty.
  const key = isCanonicalKey(f.key, f.pmcid, f.version) ? '' : f.key;
  return `${f.pmcid}\t${f.version}\t${(f.oa ? 1 : 0) | (f.retracted ? 2 : 0)}\t${f.etag}\t${key}`;
}

function canonicalKey(pmcid: number, version: number): string {
  return `metadata/PMC${pmcid}.${version}.json`;
}

/** `key === canonicalKey(pmcid, version)`, without building that string (once per row of a plan). */
function isCanonicalKey(key: string, pmcid: number, version: number): boolean {
  if (!Number.isSafeInteger(pmcid) || !Number.isSafeInteger(version) || pmcid < 0 || version < 0)
    return key === canonicalKey(pmcid, version);
  if (!key.startsWith('metadata/PMC') || !key.endsWith('.json')) return false;
  const i = decimalAt(key, 12, pmcid);
  return i > 0 && key.charCodeAt(i) === 46 && decimalAt(key, i + 1, version) === key.length - 5;
}

/** The index after `n` written in decimal at `s[i..]`, or -1 when it is not there. */
function decimalAt(s: string, i: number, n: number): number {
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  let v = 0;
  for (let k = i; k < i + digits; k++) {
    const c = s.charCodeAt(k) - 48; // NaN past the end
    if (!(c >= 0 && c <= 9)) return -1;
    v = v * 10 + c;
  }
  return v === n ? i + digits : -1;
}

export function decodeFacts(line: string): VersionFacts {
  const t1 = line.indexOf('\t');
  const t2 = line.indexOf('\t', t1 + 1);
  const t3 = line.indexOf('\t', t2 + 1);
  const t4 = line.indexOf('\t', t3 + 1);
  const flags = Number(line.slice(t2 + 1, t3));
  const pmcid = Number(line.slice(0, t1));
  const version = Number(line.slice(t1 + 1, t2));
  const key = t4 + 1 < line.length ? line.slice(t4 + 1) : canonicalKey(pmcid, version);
  return {
    pmcid,
    version,
    oa: (flags & 1) !== 0,
    retracted: (flags & 2) !== 0,
    etag: line.slice(t3 + 1, t4),
    key,
    article: null,
  };
}

function readFacts(file: string): Map<string, VersionFacts> {
  const out = new Map<string, VersionFacts>();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  let start = 0;
  while (start < text.length) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    if (nl > start) {
      const f = decodeFacts(text.slice(start, nl));
      out.set(f.key, f);
    }
    start = nl + 1;
  }
  return out;
}

/**
 * The planned articles of an earlier plan's unit files, read in PMCID order (each subset's units are, and the
 * three are merged by bucket): `take(end)` returns every article below PMCID number `end` not taken yet, keyed
 * `PMC<id>.<version>`. Only one unit file per subset is held at a time.
 */
export class UnitArticleStore {
  private readonly cursors: { subset: Subset; next: number; buffer: PlannedArticle[]; pos: number; done: boolean }[];
  constructor(private readonly unitsDir: string) {
    this.cursors = SUBSETS.map((subset) => ({ subset, next: 0, buffer: [], pos: 0, done: false }));
  }
  take(end: number): Map<string, PlannedArticle> {
    const out = new Map<string, PlannedArticle>();
    for (const c of this.cursors) {
      for (;;) {
        if (c.pos >= c.buffer.length) {
          if (c.done) break;
          const file = path.join(this.unitsDir, `${c.subset}-${String(c.next).padStart(6, '0')}.json`);
          let unit: PlannedUnit;
          try {
            unit = JSON.parse(fs.readFileSync(file, 'utf8')) as PlannedUnit;
          } catch {
            c.done = true; // no more units (or a torn one: its articles are read again from the bucket)
            break;
          }
          c.next++;
          c.buffer = unit.articles;
          c.pos = 0;
          continue;
        }
        const a = c.buffer[c.pos]!;
        if (Number(a.pmcid.slice(3)) >= end) break;
        out.set(`${a.pmcid}.${a.version}`, a);
        c.pos++;
      }
    }
    return out;
  }
}

/** Strings appended as UTF-8 to one growing buffer that is reused: what a plan writes, without holding the strings. */
class ByteSink {
  private bytes = Buffer.allocUnsafe(1 << 20);
  used = 0;
  /** Appends `s`; returns the offset it starts at. */
  append(s: string): number {
    const at = this.used;
    // A UTF-16 code unit is at most 3 UTF-8 bytes.
    if (at + s.length * 3 + 1 > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, at + s.length * 3 + 1));
      this.bytes.copy(grown, 0, 0, at);
      this.bytes = grown;
    }
    this.used = at + this.bytes.write(s, at, 'utf8');
    return at;
  }
  /** Appends a line feed. */
  newline(): void {
    this.bytes[this.used++] = 10; // append leaves room for one more byte
  }
  set(at: number, byte: number): void {
    this.bytes[at] = byte;
  }
  /** The bytes so far; the sink goes on in a new buffer of the same size (no copy: the bytes are written as they are). */
  take(): Buffer {
    const out = this.bytes.subarray(0, this.used);
    this.bytes = Buffer.allocUnsafe(this.bytes.length);
    this.used = 0;
    return out;
  }
}

/** Articles serialised per JSON.stringify call: each string stays small enough to die young in the GC's new space. */
const JSON_RUN = 64;

/**
 * The unit cutter of the streaming planner (the rule is UnitCutterBase's, plan.ts), fed one bucket's selected
 * articles of a subset at a time. The open unit is kept as UTF-8 bytes: its articles are serialised while fresh,
 * a few at a time, straight into one reused buffer, so no unit-sized string (nor any article object) is held, and
 * the unit written is byte for byte JSON.stringify(unit).
 */
class JsonUnitCutter extends UnitCutterBase<{ unitId: string; bytes: Buffer }> {
  /** The open unit's JSON so far: `{"unitId":...,"articles":[a,b,c` (no closing bracket); empty while it has no article. */
  private readonly body = new ByteSink();
  protected keep(list: readonly PlannedArticle[], from: number, to: number): void {
    for (let i = from; i < to; i += JSON_RUN) {
      const opening = this.body.used === 0;
      if (opening)
        this.body.append(
          `{"unitId":${JSON.stringify(this.openUnitId())},"subset":${JSON.stringify(this.subset)},"index":${this.units},"articles":`,
        );
      const end = Math.min(to, i + JSON_RUN);
      const at = this.body.append(JSON.stringify(i === 0 && end === list.length ? list : list.slice(i, end)));
      if (!opening) this.body.set(at, 44); // `,` in place of the run's `[`
      this.body.used--; // without the run's `]`
    }
  }
  /** The unit's JSON and a newline. */
  protected build(unitId: string): { unitId: string; bytes: Buffer } {
    this.body.append(']}\n');
    return { unitId, bytes: this.body.take() };
  }
}

/** The rows of one bucket's spill file, in order, as line offsets; `row(i)` makes the object when it is needed. */
class SpillRows {
  private readonly starts: Float64Array;
  readonly pmcid: Float64Array;
  length = 0;
  constructor(
    private readonly text: string,
    capacity: number,
  ) {
    this.starts = new Float64Array(capacity);
    this.pmcid = new Float64Array(capacity);
  }
  add(start: number, pmcid: number): void {
    this.starts[this.length] = start;
    this.pmcid[this.length++] = pmcid;
  }
  row(i: number): PlanRow {
    return SpillRows.parse(this.text, this.starts[i]!);
  }
  /** The spill line at `start`: `pmcid, version, etag, key (empty when canonical), inline facts (JSON) or nothing`. */
  static parse(text: string, start: number): PlanRow {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = text.length;
    const t1 = text.indexOf('\t', start);
    const t2 = text.indexOf('\t', t1 + 1);
    const t3 = text.indexOf('\t', t2 + 1);
    const t4 = text.indexOf('\t', t3 + 1);
    const pmcid = Number(text.slice(start, t1));
    const version = Number(text.slice(t1 + 1, t2));
    return {
      pmcid,
      version,
      etag: text.slice(t2 + 1, t3),
      key: t4 > t3 + 1 ? text.slice(t3 + 1, t4) : canonicalKey(pmcid, version),
      inline: nl > t4 + 1 ? (JSON.parse(text.slice(t4 + 1, nl)) as VersionFacts) : null,
    };
  }
}

export class StreamingPlanner {
  private readonly workDir: string;
  private readonly factsDir: string;
  private readonly excludedTmp: string;
  /** Each bucket's spill lines not yet appended to its file, as bytes: no row's strings outlive the row. */
  private readonly buffers = new Map<number, { bytes: Buffer; used: number }>();
  private excludedBuf: string[] = [];
  private excludedSize = 0;
  private readonly excludedCounts: Record<string, number> = {};
  rows = 0;

  constructor(private readonly cfg: PlannerConfig) {
    this.workDir = path.join(cfg.planDir, 'work');
    this.factsDir = path.join(cfg.planDir, 'facts');
    this.excludedTmp = path.join(this.workDir, 'excluded.ndjson');
  }

  /**
   * Clears an earlier attempt's spill. Its facts stay (they are the checkpoint), and its unit files are set aside
   * in plan/units.resume, where pass 2 finds the articles it already read.
   */
  async start(): Promise<void> {
    await fsp.rm(this.workDir, { recursive: true, force: true });
    await fsp.mkdir(this.workDir, { recursive: true });
    await fsp.mkdir(this.factsDir, { recursive: true });
    const unitsDir = this.unitsDir();
    const aside = `${unitsDir}.resume`;
    if (await exists(aside)) await fsp.rm(unitsDir, { recursive: true, force: true });
    else if (await exists(unitsDir)) await fsp.rename(unitsDir, aside);
    fs.writeFileSync(this.excludedTmp, '');
  }

  private unitsDir(): string {
    return path.dirname(this.cfg.unitFile('commercial-000000'));
  }

  /** Pass 1: one row. Identity must already be valid (the row readers check keys). */
  addRow(row: PlanRow): void {
    if (!Number.isSafeInteger(row.pmcid) || row.pmcid <= 0 || !Number.isSafeInteger(row.version) || row.version <= 0)
      throw new Error(`bad row identity for ${row.key}`);
    // The cloud key `metadata/PMC<id>.<v>.json` follows from the identity: spilled empty (a third of the line).
    const canonical = isCanonicalKey(row.key, row.pmcid, row.version);
    if ((!canonical && CONTROL_IN_FIELD.test(row.key)) || CONTROL_IN_FIELD.test(row.etag)) {
      throw new Error(`row with a tab, CR or newline in key or ETag: ${JSON.stringify(row.key)}`);
    }
    this.rows++;
    const b = Math.floor(row.pmcid / BUCKET_SPAN);
    const key = canonical ? '' : row.key;
    const line = `${row.pmcid}\t${row.version}\t${row.etag}\t${key}\t${row.inline ? JSON.stringify(row.inline) : ''}\n`;
    let buf = this.buffers.get(b);
    if (!buf) this.buffers.set(b, (buf = { bytes: Buffer.allocUnsafe(FLUSH_BYTES), used: 0 }));
    // A UTF-16 code unit is at most 3 UTF-8 bytes; a line longer than the buffer (inline facts) is appended alone.
    if (buf.used + line.length * 3 > FLUSH_BYTES) {
      this.flushBucket(b, buf);
      if (line.length * 3 > FLUSH_BYTES) {
        fs.appendFileSync(this.spillFile(b), line);
        return;
      }
    }
    buf.used += buf.bytes.write(line, buf.used, 'utf8');
  }

  /** An exclusion known before pass 2 (e.g. an unreadable list row). */
  exclude(e: Exclusion): void {
    this.excludedCounts[e.reason] = (this.excludedCounts[e.reason] ?? 0) + 1;
    const line = JSON.stringify(e) + '\n';
    this.excludedBuf.push(line);
    this.excludedSize += line.length;
    if (this.excludedSize >= FLUSH_BYTES) this.flushExcluded();
  }

  private spillFile(b: number): string {
    return path.join(this.workDir, `rows-${bucketName(b)}.tsv`);
  }

  private flushBucket(b: number, buf: { bytes: Buffer; used: number }): void {
    if (buf.used === 0) return;
    fs.appendFileSync(this.spillFile(b), buf.bytes.subarray(0, buf.used));
    buf.used = 0;
  }

  private flushExcluded(): void {
    if (this.excludedSize === 0) return;
    fs.appendFileSync(this.excludedTmp, this.excludedBuf.join(''));
    this.excludedBuf = [];
    this.excludedSize = 0;
  }

  /** A bucket's rows, in pass-2 order: PMCID, version, then input order; of a key listed twice, the later row. */
  private readRows(b: number): SpillRows {
    let text: string;
    try {
      text = fs.readFileSync(this.spillFile(b), 'utf8');
    } catch {
      text = '';
    }
    // Rows are kept as offsets into the spill text, never as objects: a bucket lives through all of pass 2's
    // slices, and objects held that long are copied and promoted by the GC.
    let lines = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', nl + 1)) lines++;
    const starts = new Float64Array(lines + 1);
    const pmcids = new Float64Array(lines + 1);
    const versions = new Float64Array(lines + 1);
    let n = 0;
    for (let start = 0; start < text.length;) {
      let nl = text.indexOf('\n', start);
      if (nl < 0) nl = text.length;
      if (nl > start) {
        const t1 = text.indexOf('\t', start);
        const t2 = text.indexOf('\t', t1 + 1);
        starts[n] = start;
        pmcids[n] = Number(text.slice(start, t1));
        versions[n] = Number(text.slice(t1 + 1, t2));
        n++;
      }
      start = nl + 1;
    }
    // Packed into one number per row, the sort is a native numeric one.
    const base = b * BUCKET_SPAN;
    let sorted: ArrayLike<number>;
    let packed = n < 65536;
    for (let i = 0; i < n && packed; i++)
      packed = versions[i]! < 65536 && pmcids[i]! - base >= 0 && pmcids[i]! - base < BUCKET_SPAN;
    if (packed) {
      const keys = new Float64Array(n);
      for (let i = 0; i < n; i++) keys[i] = ((pmcids[i]! - base) * 65536 + versions[i]!) * 65536 + i;
      keys.sort();
      for (let i = 0; i < n; i++) keys[i] = keys[i]! % 65536;
      sorted = keys;
    } else {
      const order = Array.from({ length: n }, (_, i) => i);
      order.sort((x, y) => pmcids[x]! - pmcids[y]! || versions[x]! - versions[y]! || x - y);
      sorted = order;
    }
    const rows = new SpillRows(text, n);
    // A key listed twice (same PMCID and version, so adjacent): the later row wins.
    for (let i = 0; i < n;) {
      const u = sorted[i]!;
      let j = i + 1;
      while (j < n && pmcids[sorted[j]!] === pmcids[u] && versions[sorted[j]!] === versions[u]) j++;
      if (j === i + 1) rows.add(starts[u]!, pmcids[u]!);
      else {
        const last = new Map<string, number>();
        for (let k = i; k < j; k++) {
          const key = SpillRows.parse(text, starts[sorted[k]!]!).key;
          last.delete(key);
          last.set(key, sorted[k]!);
        }
        for (const v of last.values()) rows.add(starts[v]!, pmcids[v]!);
      }
      i = j;
    }
    return rows;
  }

  /** Pass 2 and the plan's outputs. */
  async finish(): Promise<PlannerResult> {
    for (const [b, buf] of this.buffers) this.flushBucket(b, buf);
    this.buffers.clear();
    const cfg = this.cfg;
    const cutters = Object.fromEntries(SUBSETS.map((s) => [s, new JsonUnitCutter(s, cfg.limits)])) as Record<
      Subset,
      JsonUnitCutter
    >;
    const hashes = Object.fromEntries(SUBSETS.map((s) => [s, createHash('sha256')])) as Record<Subset, Hash>;
    const changes: PlanChanges = {
      previousRelease: cfg.previous?.releaseId ?? null,
      new: 0,
      changed: 0,
      unchanged: 0,
      removed: 0,
      newlyRetracted: 0,
    };
    const otherLicenses: Record<string, number> = Object.create(null) as Record<string, number>;
    let otherCodes = 0;
    let selected = 0;
    let resolved = 0;
    const seconds: PlannerResult['seconds'] = {
      readRows: 0,
      facts: 0,
      selectAndCut: 0,
      writeFacts: 0,
      unitJson: 0,
      ioWait: 0,
    };
    const cpuSeconds: PlannerResult['seconds'] = { ...seconds };
    /** CPU seconds of the process so far. */
    const cpuNow = () => {
      const c = process.cpuUsage();
      return (c.user + c.system) / 1e6;
    };

    // File writes overlap the CPU work: a few are in flight at once, and the plan waits only when more are queued
    // (every one is awaited before the plan completes; a failed write fails the plan).
    const inFlight: Promise<void>[] = [];
    const write = async (file: string, bytes: Buffer) => {
      const p = writeFileAtomic(file, bytes);
      p.catch(() => undefined); // handled when awaited below, never an unhandled rejection meanwhile
      inFlight.push(p);
      if (inFlight.length > 4) {
        const t0 = process.hrtime.bigint();
        await inFlight.shift();
        seconds.ioWait += Number(process.hrtime.bigint() - t0) / 1e9;
      }
    };
    const writeUnit = async (subset: Subset, unit: { unitId: string; bytes: Buffer } | null) => {
      if (!unit) return;
      hashes[subset].update(unit.bytes.subarray(0, unit.bytes.length - 1)); // the JSON, without the newline
      await write(cfg.unitFile(unit.unitId), unit.bytes);
    };

    const ids = new Set(bucketIds(this.workDir, /^rows-(\d+)\.tsv$/));
    if (cfg.previous) for (const b of bucketIds(cfg.previous.factsDir, /^(\d+)\.tsv$/)) ids.add(b);
    const stale = new Set(bucketIds(this.factsDir, /^(\d+)\.tsv$/));
    const order = [...ids].sort((a, b) => a - b);
    // Articles of versions selected before: the previous release's units, and this plan's interrupted attempt's.
    const unitsDir = this.unitsDir();
    const stores = [
      ...(cfg.previous ? [new UnitArticleStore(path.join(path.dirname(cfg.previous.factsDir), 'units'))] : []),
      new UnitArticleStore(`${unitsDir}.resume`),
    ];
    /** The bucket's facts lines. */
    const factBytes = new ByteSink();
    let done = 0;
    // On a failure, the writes still in flight settle before the error leaves: a retry must not meet them.
    try {
      for (const b of order) {
        stale.delete(b);
        let t = process.hrtime.bigint();
        let c = cpuNow();
        const lap = (k: keyof PlannerResult['seconds']) => {
          const now = process.hrtime.bigint();
          const cNow = cpuNow();
          seconds[k] += Number(now - t) / 1e9;
          cpuSeconds[k] += cNow - c;
          t = now;
          c = cNow;
        };
        const rows = this.readRows(b);
        lap('readRows');
        const prev = cfg.previous
          ? readFacts(path.join(cfg.previous.factsDir, `${bucketName(b)}.tsv`))
          : new Map<string, VersionFacts>();
        const factsFile = path.join(this.factsDir, `${bucketName(b)}.tsv`);
        const checkpoint = readFacts(factsFile);
        const known = new Map<string, PlannedArticle>();
        for (const store of stores) for (const [k, a] of store.take((b + 1) * BUCKET_SPAN)) known.set(k, a);
        /** Reused facts (flags only) with the article selected earlier for the same ETag, when there is one. */
        const reuse = (row: PlanRow, f: VersionFacts): VersionFacts => {
          const a = f.oa && !f.retracted ? known.get(`PMC${row.pmcid}.${row.version}`) : undefined;
          return { ...f, key: row.key, article: a && a.etag === row.etag ? a : null };
        };

        // A bucket is taken a slice of whole PMCIDs at a time, from facts to units: a slice's facts and articles
        // are garbage before the next one is read, so they die young (cheap for the GC) and memory stays small.
        for (let s = 0; s < rows.length;) {
          let e = Math.min(rows.length, s + SLICE_ROWS);
          while (e < rows.length && rows.pmcid[e] === rows.pmcid[e - 1]) e++;
          const part: PlanRow[] = [];
          for (let i = s; i < e; i++) part.push(rows.row(i));
          const facts: (VersionFacts | null)[] = new Array<VersionFacts | null>(e - s).fill(null);
          const needs: number[] = [];
          for (let i = s; i < e; i++) {
            const row = part[i - s]!;
            const p = prev.get(row.key);
            if (!p) changes.new++;
            else if (p.etag === row.etag) changes.unchanged++;
            else changes.changed++;
            if (row.inline) facts[i - s] = row.inline;
            else if (p && p.etag === row.etag) facts[i - s] = reuse(row, p);
            else {
              const c = checkpoint.get(row.key);
              if (c && c.etag === row.etag) facts[i - s] = reuse(row, c);
              else needs.push(i);
            }
          }
          const resolve = async (i: number) => {
            facts[i - s] = await cfg.resolve(part[i - s]!);
            if (++resolved % 500 === 0)
              cfg.heartbeat?.({ phase: 'metadata', resolved, bucket: done, of: order.length });
          };
          if (cfg.resolveSync) {
            for (const i of needs) facts[i - s] = cfg.resolveSync(part[i - s]!);
            resolved += needs.length;
          } else await mapLimit(needs, cfg.concurrency, resolve);
          // A reused version that is selected now but whose article was not kept (it was superseded then): read it.
          for (;;) {
            const missing: number[] = [];
            for (let i = s; i < e;) {
              let j = i;
              let newest = -1;
              while (j < e && part[j - s]!.pmcid === part[i - s]!.pmcid) {
                const f = facts[j - s]!;
                if (!f.error && (newest < 0 || f.version > facts[newest - s]!.version)) newest = j;
                j++;
              }
              const f = newest >= 0 ? facts[newest - s]! : null;
              if (f && f.oa && !f.retracted && !f.article) missing.push(newest);
              i = j;
            }
            if (missing.length === 0) break;
            await mapLimit(missing, cfg.concurrency, resolve);
          }
          if (prev.size > 0)
            for (let i = s; i < e; i++) {
              const p = prev.get(part[i - s]!.key);
              const f = facts[i - s]!;
              if (p && !p.retracted && f.retracted && !f.error) changes.newlyRetracted++;
            }
          lap('facts');
          // The bucket's facts: this plan's checkpoint and the next release's previous facts (unreadable ones are not kept).
          for (const f of facts)
            if (!f!.error) {
              factBytes.append(encodeFacts(f!));
              factBytes.newline();
            }
          lap('writeFacts');

          const chosen: Record<Subset, PlannedArticle[]> = { commercial: [], noncommercial: [], other: [] };
          for (let i = s; i < e;) {
            let j = i + 1;
            while (j < e && part[j - s]!.pmcid === part[i - s]!.pmcid) j++;
            const only = j === i + 1 ? facts[i - s]! : null;
            // One readable, selectable version (most PMCIDs): selectVersions' own first case, without its result object.
            let pick: PlannedArticle | null;
            if (only && !only.error && only.oa && !only.retracted && only.article) pick = only.article;
            else {
              const r = selectVersions(`PMC${part[i - s]!.pmcid}`, facts.slice(i - s, j - s) as VersionFacts[]);
              for (const x of r.excluded) this.exclude(x);
              pick = r.selected;
            }
            if (pick) {
              selected++;
              const subset = licenseGroup(pick.licenseCode);
              if (subset === 'other') {
                const code = pick.licenseCode ?? '(none)';
                if (otherLicenses[code] !== undefined) otherLicenses[code]++;
                else if (otherCodes < MAX_LICENSE_CODES) {
                  otherLicenses[code] = 1;
                  otherCodes++;
                } else otherLicenses['(more codes)'] = (otherLicenses['(more codes)'] ?? 0) + 1;
              }
              chosen[subset].push(pick);
            }
            i = j;
          }
          const t0 = process.hrtime.bigint();
          const c0 = cpuNow();
          const closed = SUBSETS.map((subset) => cutters[subset].pushAll(chosen[subset]));
          seconds.unitJson += Number(process.hrtime.bigint() - t0) / 1e9;
          cpuSeconds.unitJson += cpuNow() - c0;
          for (let k = 0; k < SUBSETS.length; k++) for (const u of closed[k]!) await writeUnit(SUBSETS[k]!, u);
          lap('selectAndCut');
          s = e;
        }
        if (prev.size > 0) {
          const present = new Set<string>();
          for (let i = 0; i < rows.length; i++) present.add(rows.row(i).key);
          for (const k of prev.keys()) if (!present.has(k)) changes.removed++;
        }
        if (factBytes.used > 0) await write(factsFile, factBytes.take());
        else await fsp.rm(factsFile, { force: true });
        lap('writeFacts');
        done++;
        cfg.heartbeat?.({ phase: 'buckets', bucket: done, of: order.length, selected });
      }
      for (const s of SUBSETS) await writeUnit(s, cutters[s].flush());
    } finally {
      await Promise.allSettled(inFlight);
    }
    await Promise.all(inFlight.splice(0));
    // Facts of buckets that no longer have rows, and units past the new counts, are an earlier attempt's leftovers.
    for (const b of stale) await fsp.rm(path.join(this.factsDir, `${bucketName(b)}.tsv`), { force: true });
    await fsp.rm(`${unitsDir}.resume`, { recursive: true, force: true });
    for (const name of await fsp.readdir(unitsDir).catch(() => [] as string[])) {
      const m = /^(commercial|noncommercial|other)-(\d{6})\.json$/.exec(name);
      if (m && Number(m[2]) >= cutters[m[1] as Subset].units) await fsp.rm(path.join(unitsDir, name), { force: true });
    }
    this.flushExcluded();
    await fsp.rename(this.excludedTmp, path.join(cfg.planDir, 'excluded.ndjson'));
    await fsp.rm(this.workDir, { recursive: true, force: true });

    const subsetDigests = SUBSETS.map((s) => hashes[s].digest('hex'));
    return {
      rows: this.rows,
      selected,
      excluded: { ...this.excludedCounts },
      subsets: Object.fromEntries(
        SUBSETS.map((s) => [
          s,
          { units: cutters[s].units, articles: cutters[s].articles, figureImages: cutters[s].figureImages },
        ]),
      ) as PlannerResult['subsets'],
      planHash: createHash('sha256').update(JSON.stringify(subsetDigests)).digest('hex'),
      resolved,
      seconds: rounded(seconds),
      cpuSeconds: rounded(cpuSeconds),
      changes,
      otherLicenses: { ...otherLicenses },
    };
  }

  /** Removes the spill after a failed attempt that will not be resumed (the facts checkpoint stays). */
  async abandon(): Promise<void> {
    await fsp.rm(this.workDir, { recursive: true, force: true });
  }
}
