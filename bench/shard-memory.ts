/**
 * Memory of the shard and parquet stages on a large unit: the real writeShard and writeParquet, each in a child
 * process of its own (so its peak RSS is that stage's alone), over a generated unit of 10,000 figures.
 *
 *   npm run bench:shard-memory                       # 10,000 figures
 *   npm run bench:shard-memory -- --figures 2000
 *   npm run bench:shard-memory -- --max-bytes 4000000000   # shard.maxBytes 4 GB: the unit in one shard file
 *   npm run bench:shard-memory -- --data /tmp/sm           # keep the built sample release there, reuse it next time
 *
 * The unit: the sample release is built in process from the real fixtures (buildReleaseInProcess), and its
 * articles (real full texts, figures, PubMed records, labels) are repeated under new PMCIDs until the unit holds
 * `--figures` samples. Its staged figures are files on disk where the images stage leaves them, hard links to a
 * pool of distinct JPEGs at PMC sizes (the real fixture JPEGs plus generated noisy panels of about 100-500 KB), so
 * the shard stage reads a file per sample as it does in a release. Default shard limits (10,000 samples, 1 GB):
 * the unit's shard is written in parts `NNNNNN_001.tar`... as its bytes pass 1 GB.
 *
 * Printed per stage: peak RSS (the kernel's high-water mark, getrusage maxrss, of the child: Node and the
 * modules loaded, plus the stage), the RSS before the stage started, CPU seconds and the outputs' sizes and sha256s
 * (equal runs give equal hashes).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { ndjson, readJson, readNdjson, sha256Hex, writeJsonAtomic } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import type { UnitTask } from '../activities/common/stage';
import type { FigureLabel } from '../activities/annotate/activity';
import { pubmedBatchPath } from '../activities/enrich/activity';
import { stagedImagePath, type PreparedImage } from '../activities/images/activity';
import { writeParquet } from '../activities/parquet/activity';
import type { ParsedArticleLine } from '../activities/parse/activity';
import type { PlannedUnit } from '../activities/plan/plan';
import { writeShard } from '../activities/shard/activity';
import type { ReleaseInput } from '../config/release';
import { fixturePaths } from '../config/paths';
import { arg, nArg, stopwatch, xorshift32 } from './common';

const UNIT_INDEX = 900;

/** A JPEG of a noisy micrograph-like panel: noise is what makes real figure JPEGs large. */
async function noisyJpeg(i: number): Promise<Buffer> {
  const r = xorshift32(0x51ed27 + i * 104729);
  const width = 500 + Math.floor(r() * 700);
  const height = 400 + Math.floor(r() * 500);
  return sharp({
    create: {
      width,
      height,
      channels: 3,
      background: { r: Math.floor(r() * 255), g: Math.floor(r() * 255), b: Math.floor(r() * 255) },
      noise: { type: 'gaussian', mean: 100 + Math.floor(r() * 60), sigma: 10 + Math.floor(r() * 20) },
    },
  })
    .jpeg({ quality: 80 + Math.floor(r() * 12) })
    .toBuffer();
}

/** The sample's articles repeated under new PMCIDs into one unit of `figures` samples, written as the stages leave it. */
async function buildLargeUnit(
  release: ReleaseInput,
  figures: number,
  poolSize: number,
): Promise<UnitTask & { pmidBatches: number }> {
  const layout = new ReleaseLayout(release.dataDir, release.releaseId);
  // Templates: every article of the sample's units with its images, labels and PubMed records.
  const templates: { line: ParsedArticleLine; keys: Set<string>; labels: Map<string, FigureLabel> }[] = [];
  const pubmedRecords: unknown[] = [];
  const plannedUnits = fs.readdirSync(path.join(layout.planDir, 'units')).map((f) => f.replace(/\.json$/, ''));
  const largeUnitId = `commercial-${String(UNIT_INDEX).padStart(6, '0')}`;
  for (const unitId of plannedUnits.filter((u) => u !== largeUnitId).sort()) {
    const dir = layout.unitDir(unitId);
    const images = new Set((await readNdjson<PreparedImage>(path.join(dir, 'images.ndjson'))).map((i) => i.key));
    const labels = new Map((await readNdjson<FigureLabel>(path.join(dir, 'labels.ndjson'))).map((l) => [l.key, l]));
    for (const line of await readNdjson<ParsedArticleLine>(path.join(dir, 'articles.ndjson'))) {
      const keys = new Set(
        line.figures.filter((f) => !f.rejected && images.has(f.key) && labels.has(f.key)).map((f) => f.key),
      );
      if (keys.size > 0) templates.push({ line, keys, labels });
    }
    for (const f of fs.readdirSync(path.join(dir, 'pubmed')).filter((f) => f.endsWith('.json')))
      pubmedRecords.push(...(await readJson<{ records: unknown[] }>(path.join(dir, 'pubmed', f))).records);
  }
  if (templates.length === 0) throw new Error('the sample release has no published figures');

  const real = fs
    .readdirSync(fixturePaths.images(), { recursive: true })
    .map(String)
    .filter((f) => /\.jpe?g$/i.test(f))
    .sort()
    .map((f) => fs.readFileSync(path.join(fixturePaths.images(), f)));
  const poolDir = path.join(release.dataDir, 'bench-pool');
  fs.mkdirSync(poolDir, { recursive: true });
  const pool: { file: string; width: number; height: number; bytes: number; sha256: string }[] = [];
  for (let i = 0; i < poolSize; i++) {
    const file = path.join(poolDir, `${i}.jpg`);
    const jpeg = i < real.length ? real[i]! : fs.existsSync(file) ? fs.readFileSync(file) : await noisyJpeg(i);
    const meta = await sharp(jpeg).metadata();
    if (!fs.existsSync(file)) fs.writeFileSync(file, jpeg);
    pool.push({ file, width: meta.width!, height: meta.height!, bytes: jpeg.length, sha256: sha256Hex(jpeg) });
  }

  const unitId = largeUnitId;
  const unitDir = layout.unitDir(unitId);
  fs.rmSync(unitDir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(stagedImagePath(unitDir, 'x')), { recursive: true });
  const lines: ParsedArticleLine[] = [];
  const images: PreparedImage[] = [];
  const labels: FigureLabel[] = [];
  for (let a = 0; images.length < figures; a++) {
    const t = templates[a % templates.length]!;
    const line = structuredClone(t.line);
    const pmcid = `PMC${90000000 + a}`;
    line.article = `${pmcid}.${line.planned.version}`;
    line.planned.pmcid = pmcid;
    line.record.pmcid = pmcid;
    for (const f of line.figures) {
      const key = `${pmcid}_${line.planned.version}_${f.index}`;
      if (!t.keys.has(f.key)) {
        f.key = key;
        continue;
      }
      if (images.length >= figures) f.rejected = 'bench: the unit is full';
      else {
        const img = pool[images.length % pool.length]!;
        fs.linkSync(img.file, stagedImagePath(unitDir, key));
        images.push({
          key,
          article: line.article,
          width: img.width,
          height: img.height,
          bytes: img.bytes,
          sha256: img.sha256,
          sourceFormat: 'jpeg',
          passthrough: true,
        });
        labels.push({ ...t.labels.get(f.key)!, key });
      }
      f.key = key;
    }
    lines.push(line);
  }
  const unit: PlannedUnit = { unitId, subset: 'commercial', index: UNIT_INDEX, articles: lines.map((l) => l.planned) };
  await writeJsonAtomic(layout.unitFile(unitId), unit);
  fs.writeFileSync(path.join(unitDir, 'articles.ndjson'), ndjson(lines));
  fs.writeFileSync(path.join(unitDir, 'images.ndjson'), ndjson(images));
  fs.writeFileSync(path.join(unitDir, 'labels.ndjson'), ndjson(labels));
  await writeJsonAtomic(pubmedBatchPath(unitDir, 0), { records: pubmedRecords });
  return { release, unitId, pmidBatches: 1 };
}

interface StageRun {
  stage: string;
  maxRssMiB: number;
  rssBeforeMiB: number;
  cpuS: number;
  wallS: number;
  outputs: { file: string; rows: number; bytes: number; sha256: string }[];
  error?: string;
  atTop: { rssMiB: number; heapMiB: number; externalMiB: number };
}

/** Runs one stage in this (child) process and prints its StageRun as the last line. */
async function child(stage: 'shard' | 'parquet', taskFile: string): Promise<void> {
  const task = JSON.parse(fs.readFileSync(taskFile, 'utf8')) as UnitTask & { pmidBatches: number };
  const rssBefore = process.memoryUsage().rss;
  // Sampled as well as the kernel's peak: what the process held (V8 heap, Buffers) at the highest RSS seen.
  let top = process.memoryUsage();
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > top.rss) top = m;
  }, 25);
  const elapsed = stopwatch();
  let outputs: StageRun['outputs'] = [];
  let error: string | undefined;
  try {
    if (stage === 'shard') {
      const r = await writeShard(task, task.pmidBatches);
      outputs = r.shards.map((s) => ({ file: s.shard, rows: s.samples, bytes: s.bytes, sha256: s.sha256 }));
    } else {
      const r = await writeParquet(task);
      outputs = r.files.map((f) => ({ file: f.file, rows: f.rows, bytes: f.bytes, sha256: f.sha256 }));
    }
  } catch (err) {
    // A stage that fails (out of memory in a string, say) is reported with the memory it had reached.
    error = String(err).split('\n')[0];
  }
  const { ms, cpuMs } = elapsed();
  clearInterval(sampler);
  const run: StageRun = {
    stage,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    rssBeforeMiB: rssBefore / 2 ** 20,
    cpuS: cpuMs / 1000,
    wallS: ms / 1000,
    outputs,
    error,
    atTop: { rssMiB: top.rss / 2 ** 20, heapMiB: top.heapUsed / 2 ** 20, externalMiB: top.external / 2 ** 20 },
  };
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

function runChild(stage: string, taskFile: string): Promise<StageRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, __filename, '--child', stage, '--task', taskFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${stage} child exited with ${code}`));
      const lines = out.trim().split('\n');
      resolve(JSON.parse(lines[lines.length - 1]!) as StageRun);
    });
  });
}

async function main(): Promise<void> {
  const stage = arg('child');
  if (stage === 'shard' || stage === 'parquet') return child(stage, arg('task', ''));
  const figures = nArg('figures', 10_000);
  const t0 = performance.now();
  // Imported here, not at the top: the stage children load only what the stages load.
  const { buildReleaseInProcess } = await import('../test/support/in-process-release');
  // --data DIR keeps the built sample release there (and reuses it on the next run) instead of a temporary folder.
  const keep = arg('data');
  const saved = keep ? path.join(keep, 'bench-release.json') : '';
  let release: ReleaseInput;
  let cleanup = () => {};
  if (keep && fs.existsSync(saved)) release = JSON.parse(fs.readFileSync(saved, 'utf8')) as ReleaseInput;
  else {
    const rel = await buildReleaseInProcess({ releaseId: 'bench-shard-memory', dataDir: keep });
    ({ release, cleanup } = rel);
    if (keep) fs.writeFileSync(saved, JSON.stringify(release));
  }
  // --max-bytes N: shard.maxBytes of the run (default 1 GB), e.g. above the unit's size for a single shard file.
  const maxBytes = arg('max-bytes');
  if (maxBytes) release = { ...release, shard: { maxSamples: 10_000, maxBytes: Number(maxBytes) } } as ReleaseInput;
  try {
    const task = await buildLargeUnit(release, figures, nArg('pool', 200));
    const unitDir = new ReleaseLayout(release.dataDir, release.releaseId).unitDir(task.unitId);
    const staged = fs.readdirSync(path.dirname(stagedImagePath(unitDir, 'x')));
    const imageBytes = (await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'))).reduce(
      (n, i) => n + i.bytes,
      0,
    );
    const articles = fs.statSync(path.join(unitDir, 'articles.ndjson')).size;
    console.log(
      `unit ${task.unitId}: ${staged.length} figures (${(imageBytes / 2 ** 20).toFixed(0)} MiB of JPEGs, ${(imageBytes / staged.length / 1024).toFixed(0)} KiB mean), articles.ndjson ${(articles / 2 ** 20).toFixed(0)} MiB; built in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
    const taskFile = path.join(release.dataDir, 'bench-task.json');
    await writeJsonAtomic(taskFile, task);
    console.log(
      `${'stage'.padEnd(8)} ${'peak RSS'.padStart(10)} ${'RSS before'.padStart(11)} ${'CPU s'.padStart(7)} ${'wall s'.padStart(7)} ${'heap+ext MiB'.padStart(13)}  outputs`,
    );
    for (const s of ['shard', 'parquet']) {
      const r = await runChild(s, taskFile);
      console.log(
        `${s.padEnd(8)} ${`${r.maxRssMiB.toFixed(0)} MiB`.padStart(10)} ${`${r.rssBeforeMiB.toFixed(0)} MiB`.padStart(11)} ${r.cpuS.toFixed(1).padStart(7)} ${r.wallS.toFixed(1).padStart(7)}  ${`${r.atTop.heapMiB.toFixed(0)}+${r.atTop.externalMiB.toFixed(0)}`.padStart(13)}  ${r.error ? `FAILED: ${r.error}` : ''}${r.outputs.map((o) => `${o.file} ${o.rows} rows ${(o.bytes / 2 ** 20).toFixed(0)} MiB ${o.sha256.slice(0, 12)}`).join(', ')}`,
      );
    }
    const samples = path.join(unitDir, 'samples.ndjson');
    if (fs.existsSync(samples)) console.log(`samples.ndjson ${(fs.statSync(samples).size / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    if (!keep) cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
