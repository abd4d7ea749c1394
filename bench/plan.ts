/**
 * Planning benchmark (docs/sources.md). Two parts:
 *
 * A. The streaming planner over a synthetic S3 inventory of ~8.2 million rows in the real format (manifest.json
 *    with fileSchema "Bucket, Key, LastModifiedDate, ETag" and MD5checksum, 5 csv.gz data files of quoted rows,
 *    keys in S3's lexicographic order), read from disk through DirPmcSource. MEASURED, in a child process of its
 *    own (so its peak RSS is the plan's alone): the manifest read, streaming gunzip + CSV split of every row with
 *    the md5 of each data file verified, the spill to per-bucket files, pass 2 (facts per row, selection of the
 *    newest OA non-retracted version per PMCID, license grouping, unit cutting), writing every unit file, the
 *    gzipped facts files and excluded.ndjson. NOT MEASURED: the 8.2M metadata GETs. Their facts come from an
 *    in-process function (deterministic from the PMCID: 92% OA, 0.1% retracted, PMC-like license mix, 0-12 images)
 *    handed to the planner in place of the GET + JSON.parse + schema check.
 *    With --incremental, a second plan of the same inventory against the first (every ETag unchanged: no facts
 *    resolved, all read back from the first plan's facts files) is measured the same way.
 * B. The metadata GET path that part A leaves out, at a smaller count: a loopback bucket (sample/mirror-server.ts, in
 *    a child process) holding --get-count metadata JSONs and their inventory, planned for real by planRelease over HTTP (GET,
 *    JSON.parse, schema check, facts), timed, as GETs per second at the planner's concurrency.
 *
 * npm run bench:plan -- [--rows 8200000] [--get-count 5000] [--incremental] [--semi-space-mib 64 (0: V8 default)] [--keep]
 *   [--digest: after the measured plan, one sha256 over every plan file, to check that a change keeps the outputs]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { PerformanceObserver } from 'node:perf_hooks';
import { ReleaseInputSchema } from '../config/release';
import { ReleaseLayout } from '../activities/common/layout';
import { fetchTuning } from '../activities/fetch/retry';
import { DirPmcSource } from '../activities/fetch/source';
import { planRelease, runPlan } from '../activities/plan/activity';
import type { PlannedArticle, VersionFacts } from '../activities/plan/plan';
import type { PlanRow } from '../activities/plan/planner';
import { writeSyntheticInventory } from '../sample/mirror-server';
import { arg, serveMirror, startMirrorChild, stopwatch } from './common';

const BUCKET = 'pmc-oa-opendata';
const INV = `inventory-reports/${BUCKET}/metadata`;
const MAX_ID = 13_900_000;

const HEX = Array.from({ length: 8192 }, (_, i) => createHash('md5').update(`pool${i}`).digest('hex'));

/** A cheap integer hash (for per-row draws without allocating a PRNG per row). */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Which PMCIDs exist and how many versions each has: every id is kept with probability `p`, 4.5% get a 2nd version. */
function versionsOf(id: number, p: number): number {
  const h = mix(id ^ 0x9e3779b9);
  if (h / 4294967296 >= p) return 0;
  return mix(h) % 1000 < 45 ? 2 : 1;
}

/** Ids 1..MAX_ID in S3's key order ("PMC10..." before "PMC2..."), by a walk of the decimal digit trie. */
function* lexicographicIds(max: number): Generator<number> {
  const stack: number[] = [];
  for (let d = 9; d >= 1; d--) stack.push(d);
  while (stack.length) {
    const p = stack.pop()!;
    if (p > max) continue;
    yield p;
    if (p * 10 <= max) for (let c = 9; c >= 0; c--) stack.push(p * 10 + c);
  }
}

/** The synthetic inventory of about `rows` rows over PMCIDs 1..maxId (test/plan-pinned.test.ts uses a small one). */
export async function generateInventory(
  root: string,
  rows: number,
  maxId = MAX_ID,
): Promise<{ rows: number; bytes: number; seconds: number }> {
  const t0 = Date.now();
  const p = rows / (maxId * 1.045);
  const files = 5;
  const perFile = Math.ceil(rows / files);
  let count = 0;
  let bytes = 0;
  const manifestFiles: { key: string; size: number; MD5checksum: string }[] = [];
  const ids = lexicographicIds(maxId);
  let pending: string[] = [];
  for (let f = 0; f < files; f++) {
    const key = `${INV}/data/bench-${f}.csv.gz`;
    const file = path.join(root, key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    let inFile = 0;
    const lines = (function* () {
      let buf: string[] = [];
      const flush = () => {
        const s = buf.join('');
        buf = [];
        return s;
      };
      while (f === files - 1 || inFile < perFile) {
        if (pending.length === 0) {
          const next = ids.next();
          if (next.done) break;
          const id = next.value;
          const v = versionsOf(id, p);
          for (let k = 1; k <= v; k++)
            pending.push(
              `"${BUCKET}","metadata/PMC${id}.${k}.json","2026-0${1 + (id % 9)}-1${id % 10}T11:47:59.000Z","${HEX[mix(id * 4 + k) & 8191]}"\n`,
            );
          continue;
        }
        buf.push(pending.shift()!);
        inFile++;
        count++;
        if (buf.length >= 4096) yield flush();
      }
      if (buf.length) yield flush();
    })();
    const hash = createHash('md5');
    let size = 0;
    const gz = createGzip({ level: 1 });
    gz.on('data', (c: Buffer) => {
      hash.update(c);
      size += c.length;
    });
    await pipeline(Readable.from(lines), gz, fs.createWriteStream(file));
    bytes += size;
    manifestFiles.push({ key, size, MD5checksum: hash.digest('hex') });
  }
  pending = [];
  const manifestKey = `${INV}/2026-11-01T01-00Z/manifest.json`;
  fs.mkdirSync(path.dirname(path.join(root, manifestKey)), { recursive: true });
  fs.writeFileSync(
    path.join(root, manifestKey),
    JSON.stringify({
      sourceBucket: BUCKET,
      fileFormat: 'CSV',
      fileSchema: 'Bucket, Key, LastModifiedDate, ETag',
      files: manifestFiles,
    }),
  );
  return { rows: count, bytes, seconds: (Date.now() - t0) / 1000 };
}

const LICENSES: [number, string | null][] = [
  [0.55, 'CC BY'],
  [0.67, 'CC BY-NC-ND'],
  [0.77, 'CC BY-NC'],
  [0.8, 'CC0'],
  [0.83, 'CC BY-NC-SA'],
  [0.84, 'CC BY-SA'],
  [0.845, 'CC BY-ND'],
  [0.925, 'TDM'],
  [1, null],
];

/** Strings that do not depend on the PMCID come from pools (built once), so the source costs the planner little. */
const CITATIONS = Array.from(
  { length: 4096 },
  (_, i) =>
    `J Synth Biol. 2024 Jan ${1 + (i % 28)};${i % 90}(${1 + (i % 12)}):e${100000 + i * 37}. doi: 10.1000/j.${100000 + i * 37}`,
);
const DOIS = Array.from({ length: 4096 }, (_, i) => `10.1000/j.${100000 + i * 37}`);
const FIGURE_NAMES = Array.from({ length: 4096 }, (_, i) =>
  Array.from({ length: 12 }, (_, k) => `fig-${i % 1000}-g${String(k + 1).padStart(3, '0')}.jpg`),
);

/**
 * The facts a metadata GET would give for this row (what part A supplies in place of the GETs): per row only the
 * PMCID-dependent strings are built (PMCID, PMID, XML and media keys); citation, DOI and md5s come from pools.
 */
export function syntheticFacts(row: Pick<PlanRow, 'pmcid' | 'version' | 'key' | 'etag'>): VersionFacts {
  const h = mix(row.pmcid * 16 + row.version);
  const h2 = mix(h);
  const oa = h % 1000 < 920;
  const retracted = h2 % 1000 === 0;
  if (!oa || retracted)
    return { key: row.key, pmcid: row.pmcid, version: row.version, etag: row.etag, oa, retracted, article: null };
  const u = ((h >>> 10) % 1000) / 1000;
  let licenseCode: string | null = null;
  for (const [p, code] of LICENSES) {
    if (u < p) {
      licenseCode = code;
      break;
    }
  }
  const pmcid = `PMC${row.pmcid}`;
  const prefix = `${pmcid}.${row.version}/`;
  const images = Math.min(12, (((h2 >>> 8) % 13) * ((h2 >>> 16) % 13)) / 9) | 0; // 0-12, mean about 3.7
  const names = FIGURE_NAMES[h2 & 4095]!;
  const media: { key: string; md5: string | null }[] = [];
  for (let i = 0; i < images; i++) media.push({ key: prefix + names[i], md5: HEX[(h2 + i * 7919) & 8191]! });
  const article: PlannedArticle = {
    pmcid,
    version: row.version,
    pmid: String(30_000_000 + row.pmcid),
    doi: DOIS[h & 4095]!,
    citation: CITATIONS[h & 4095]!,
    licenseCode,
    xml: { key: `${prefix}${pmcid}.${row.version}.xml`, md5: HEX[h & 8191]! },
    media,
    etag: row.etag,
  };
  return { key: row.key, pmcid: row.pmcid, version: row.version, etag: row.etag, oa, retracted, article };
}

/** One sha256 over every file of the plan folder (relative path and bytes, in path order): outputs compared across code changes. */
export function planDigest(dir: string): string {
  const h = createHash('sha256');
  const files = fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
  for (const f of files) h.update(`${f}\n`).update(fs.readFileSync(path.join(dir, f)));
  return h.digest('hex');
}

function duSync(dir: string): number {
  let n = 0;
  for (const d of fs.readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (d.isFile()) n += fs.statSync(path.join(d.parentPath, d.name)).size;
  return n;
}

/** Part A, in its own process: one plan, its time, peak RSS and outputs. */
async function child(root: string, dataDir: string, releaseId: string, previousRelease: string | null): Promise<void> {
  const release = ReleaseInputSchema.parse({
    releaseId,
    dataDir,
    source: { kind: 'pmc-cloud-dir', root },
    ...(previousRelease ? { previousRelease } : {}),
  });
  const layout = new ReleaseLayout(dataDir, releaseId);
  const previous = previousRelease
    ? { releaseId: previousRelease, factsDir: path.join(new ReleaseLayout(dataDir, previousRelease).planDir, 'facts') }
    : null;
  let gcMs = 0;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  gcs.observe({ entryTypes: ['gc'] });
  let heapMax = 0;
  let pass1HeapMax = 0;
  const sampler = setInterval(() => (heapMax = Math.max(heapMax, process.memoryUsage().heapUsed)), 250);
  let pass1End = 0;
  let pass1Cpu = 0;
  const elapsed = stopwatch();
  const { result } = await runPlan(release, layout, previous, undefined, {
    source: new DirPmcSource(root),
    resolveSync: syntheticFacts,
    heartbeat: (d) => {
      if (d.phase === 'buckets' && pass1End === 0) {
        const e = elapsed();
        pass1End = e.ms / 1000;
        pass1Cpu = e.cpuMs / 1000;
        pass1HeapMax = heapMax;
      }
    },
  });
  const { ms, cpuMs } = elapsed();
  gcs.disconnect();
  const seconds = ms / 1000;
  clearInterval(sampler);
  const out = {
    releaseId,
    previousRelease,
    seconds: +seconds.toFixed(1),
    cpuSeconds: +(cpuMs / 1000).toFixed(1),
    rowsPerSecond: Math.round(result.rows / seconds),
    pass1Seconds: +pass1End.toFixed(1),
    pass1CpuSeconds: +pass1Cpu.toFixed(1),
    pass2Parts: result.seconds,
    pass2CpuParts: result.cpuSeconds,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    gcPauseSeconds: +(gcMs / 1000).toFixed(1),
    peakHeapMiB: Math.round(heapMax / 2 ** 20),
    pass1PeakHeapMiB: Math.round(pass1HeapMax / 2 ** 20),
    rows: result.rows,
    resolved: result.resolved,
    selected: result.selected,
    excluded: result.excluded,
    units: Object.fromEntries(Object.entries(result.subsets).map(([k, v]) => [k, v.units])),
    changes: result.changes,
    unitFilesMiB: Math.round(duSync(path.join(layout.planDir, 'units')) / 2 ** 20),
    factsMiB: Math.round(duSync(path.join(layout.planDir, 'facts')) / 2 ** 20),
    planFilesSha256: process.argv.includes('--digest') ? planDigest(layout.planDir) : undefined,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function runChild(
  root: string,
  dataDir: string,
  releaseId: string,
  previous: string | null,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    // A 64 MiB young generation (V8's default is 16 MiB): most of a plan's garbage (rows, facts, articles waiting
    // for their unit) dies young; a worker running the plan activity can set the same through NODE_OPTIONS.
    const semi = arg('semi-space-mib', '64');
    const flags = semi === '0' ? [] : [`--max-semi-space-size=${semi}`];
    const p = spawn(
      process.execPath,
      [
        ...flags,
        ...process.execArgv,
        __filename,
        '--child',
        root,
        dataDir,
        releaseId,
        previous ?? '-',
        ...(process.argv.includes('--digest') ? ['--digest'] : []),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>)
        : reject(new Error(`child exited ${code}`)),
    );
  });
}

/** Part B: real metadata GETs over loopback HTTP through planRelease. */
async function getThroughput(tmp: string, count: number): Promise<Record<string, unknown>> {
  const root = path.join(tmp, 'get-bucket');
  fs.mkdirSync(path.join(root, 'metadata'), { recursive: true });
  const t0 = Date.now();
  for (let i = 0; i < count; i++) {
    const id = 1_000_000 + i * 7;
    const f = syntheticFacts({ pmcid: id, version: 1, key: '', etag: '' });
    const a = f.article;
    const meta = {
      pmcid: `PMC${id}`,
      version: 1,
      pmid: 30_000_000 + id,
      doi: `10.1000/j.${id}`,
      title: `Synthetic article ${id}`,
      citation: a?.citation ?? 'J. 2024.',
      is_pmc_openaccess: f.oa,
      is_manuscript: false,
      is_historical_ocr: false,
      is_retracted: f.retracted,
      license_code: a?.licenseCode ?? 'CC BY',
      xml_url: `s3://${BUCKET}/PMC${id}.1/PMC${id}.1.xml?md5=${HEX[i % HEX.length]}`,
      pdf_url: `s3://${BUCKET}/PMC${id}.1/PMC${id}.1.pdf?md5=${HEX[(i + 1) % HEX.length]}`,
      text_url: `s3://${BUCKET}/PMC${id}.1/PMC${id}.1.txt?md5=${HEX[(i + 2) % HEX.length]}`,
      media_urls: [
        ...(a?.media ?? []).map((m) => `s3://${BUCKET}/${m.key}?md5=${m.md5}`),
        `s3://${BUCKET}/PMC${id}.1/supp-s001.xlsx?md5=${HEX[(i + 3) % HEX.length]}`,
      ],
    };
    fs.writeFileSync(path.join(root, 'metadata', `PMC${id}.1.json`), JSON.stringify(meta, null, 2));
  }
  await writeSyntheticInventory(root, '2026-11-01', { rowsPerFile: 100_000 });
  const built = (Date.now() - t0) / 1000;
  const mirror = await startMirrorChild(__filename, root); // server and planner do not share one event loop
  try {
    const release = ReleaseInputSchema.parse({
      releaseId: 'bench-get',
      dataDir: path.join(tmp, 'get-data'),
      source: { kind: 'pmc-cloud-http', baseUrl: mirror.baseUrl },
    });
    const rss0 = process.memoryUsage().rss;
    const elapsed = stopwatch();
    const s = await planRelease(release);
    const seconds = elapsed().ms / 1000;
    return {
      metadataJsons: count,
      bucketBuiltSeconds: built,
      concurrency: fetchTuning().planConcurrency,
      seconds: +seconds.toFixed(2),
      getsPerSecond: Math.round((s.metadataFetched ?? 0) / seconds),
      selected: s.selectedArticles,
      rssGrowthMiB: Math.round((process.memoryUsage().rss - rss0) / 2 ** 20),
      hoursFor8_2M_atThisRate: +(8_200_000 / ((s.metadataFetched ?? 0) / seconds) / 3600).toFixed(2),
    };
  } finally {
    mirror.stop();
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === '--serve') return serveMirror(process.argv[3]!);
  if (process.argv[2] === '--child') {
    const [, , , root, dataDir, releaseId, prev] = process.argv;
    await child(root!, dataDir!, releaseId!, prev === '-' ? null : prev!);
    return;
  }
  const rows = Number(arg('rows', '8200000'));
  const getCount = Number(arg('get-count', '5000'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-bench-plan-'));
  const report: Record<string, unknown> = {
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`,
    loadAverageAtStart: os.loadavg().map((x) => +x.toFixed(2)),
  };
  try {
    const root = path.join(tmp, 'bucket');
    const gen = await generateInventory(root, rows);
    report.inventory = { rows: gen.rows, csvGzMiB: +(gen.bytes / 2 ** 20).toFixed(1), generatedSeconds: gen.seconds };
    console.error(`inventory: ${gen.rows} rows, ${(gen.bytes / 2 ** 20).toFixed(0)} MiB csv.gz in ${gen.seconds}s`);
    const dataDir = path.join(tmp, 'data');
    report.plan = await runChild(root, dataDir, 'bench-a', null);
    console.error('plan:', JSON.stringify(report.plan));
    if (process.argv.includes('--incremental')) {
      report.incrementalPlan = await runChild(root, dataDir, 'bench-b', 'bench-a');
      console.error('incremental plan:', JSON.stringify(report.incrementalPlan));
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (getCount > 0) report.metadataGets = await getThroughput(tmp, getCount);
    report.loadAverageAtEnd = os.loadavg().map((x) => +x.toFixed(2));
    console.log(JSON.stringify(report, null, 2));
  } finally {
    if (!process.argv.includes('--keep')) fs.rmSync(tmp, { recursive: true, force: true });
    else console.error(`kept ${tmp}`);
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
