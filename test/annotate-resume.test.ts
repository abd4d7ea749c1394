import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import {
  annotateUnit,
  ensureAnnotationModels,
  releaseEmbedders,
  type AnnotateResult,
  type FigureLabel,
} from '../activities/annotate/activity';
import {
  bytesToRows,
  FAILED_PARTIAL,
  EMBEDDINGS_PARTIAL,
  type AnnotateProgress,
  type UnitEmbeddingsMeta,
} from '../activities/annotate/unit-embeddings';
import { buildSyntheticRelease, type SyntheticRelease } from './taxonomy-fixture';

/** Collects log lines (the worker's logger in production). */
class CaptureLogger implements Logger {
  readonly lines: Array<{ level: LogLevel; message: string; meta?: LogMetadata }> = [];
  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.lines.push({ level, message, meta });
  }
  trace(m: string, meta?: LogMetadata) {
    this.log('TRACE', m, meta);
  }
  debug(m: string, meta?: LogMetadata) {
    this.log('DEBUG', m, meta);
  }
  info(m: string, meta?: LogMetadata) {
    this.log('INFO', m, meta);
  }
  warn(m: string, meta?: LogMetadata) {
    this.log('WARN', m, meta);
  }
  error(m: string, meta?: LogMetadata) {
    this.log('ERROR', m, meta);
  }
}

const readLabels = (dir: string): FigureLabel[] =>
  fs
    .readFileSync(path.join(dir, 'labels.ndjson'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as FigureLabel);

describe('annotateUnit: batches, heartbeats, stored embeddings, resume from the last heartbeat', function () {
  this.timeout(60_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'annotate-resume-'));
  const FIGURES = 10;
  const BATCH = 3;
  let clean: SyntheticRelease;

  const synthetic = (name: string, extra: Partial<Parameters<typeof buildSyntheticRelease>[0]> = {}) =>
    buildSyntheticRelease({
      dataDir: path.join(tmp, name),
      units: 2,
      figuresPerUnit: FIGURES,
      annotate: { batchSize: BATCH },
      ...extra,
    });

  before(async () => {
    clean = await synthetic('clean');
    await ensureAnnotationModels(clean.release);
  });
  after(async () => {
    await releaseEmbedders();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('heartbeats after every batch, stores the embeddings, reports the provider and logs it once per process', async () => {
    await releaseEmbedders(); // a fresh "process": the next session creation logs
    const logger = new CaptureLogger();
    const env = new MockActivityEnvironment(undefined, { logger });
    const beats: AnnotateProgress[] = [];
    env.on('heartbeat', (d: AnnotateProgress) => beats.push(d));
    const results: AnnotateResult[] = [];
    for (const unitId of clean.units) results.push(await env.run(annotateUnit, { release: clean.release, unitId }));

    assert.deepEqual(
      beats.map((b) => b.done),
      [3, 6, 9, 10, 3, 6, 9, 10],
    );
    assert.ok(
      beats.every((b) => b.kind === 'annotate-progress' && b.rows === FIGURES && b.dim === 64 && b.provider === 'cpu'),
    );
    for (const r of results) {
      assert.equal(r.provider, 'cpu');
      assert.deepEqual(r.fallbacks, []);
      assert.equal(r.inputType, 'float32');
      assert.deepEqual(
        [r.images, r.labelled, r.failed, r.resumedFrom, r.embeddedNow],
        [FIGURES, FIGURES, 0, 0, FIGURES],
      );
    }
    const providerLines = logger.lines.filter((l) => /execution provider/.test(l.message));
    assert.equal(providerLines.length, 1, `logged once for two units: ${JSON.stringify(providerLines)}`);
    assert.equal(providerLines[0]!.meta?.provider, 'cpu');

    const unitDir = clean.layout.unitDir(clean.units[0]!);
    const rows = bytesToRows(fs.readFileSync(path.join(unitDir, 'embeddings.f32')));
    assert.equal(rows.length, FIGURES * 64);
    const meta = JSON.parse(fs.readFileSync(path.join(unitDir, 'embeddings.json'), 'utf8')) as UnitEmbeddingsMeta;
    assert.deepEqual([meta.rows, meta.dim, meta.failed.length, meta.provider], [FIGURES, 64, 0, 'cpu']);
    assert.ok(
      !fs.existsSync(path.join(unitDir, EMBEDDINGS_PARTIAL)) && !fs.existsSync(path.join(unitDir, FAILED_PARTIAL)),
    );
    assert.equal(readLabels(unitDir).length, FIGURES);
    // Recorded in the stage manifest with its outputs: a rerun returns it without touching the model.
    const again = await env.run(annotateUnit, { release: clean.release, unitId: clean.units[0]! });
    assert.deepEqual(again, results[0]);
    assert.equal(beats.length, 8);
  });

  it('a retried attempt continues from its last heartbeat and ends with the same embeddings and labels', async () => {
    const crash = await synthetic('crash');
    await ensureAnnotationModels(crash.release);
    const task = { release: crash.release, unitId: crash.units[0]! };
    const unitDir = crash.layout.unitDir(task.unitId);

    // Attempt 1: cancelled (as a lost worker would be timed out) right after its second heartbeat.
    const first = new MockActivityEnvironment({ attempt: 1 });
    const beats: AnnotateProgress[] = [];
    first.on('heartbeat', (d: AnnotateProgress) => {
      beats.push(d);
      if (beats.length === 2) first.cancel();
    });
    await assert.rejects(first.run(annotateUnit, task), (err: unknown) => err instanceof CancelledFailure);
    const last = beats.at(-1)!;
    assert.equal(last.done, 6);
    // A write that happened after the last recorded heartbeat (1.5 rows of garbage) must not survive the resume.
    fs.appendFileSync(path.join(unitDir, EMBEDDINGS_PARTIAL), Buffer.alloc(64 * 4 * 1.5, 0x7f));
    assert.ok(!fs.existsSync(path.join(unitDir, 'labels.ndjson')));

    // Attempt 2: Temporal hands the last heartbeat's details to the retry.
    const second = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: last });
    const resumedBeats: AnnotateProgress[] = [];
    second.on('heartbeat', (d: AnnotateProgress) => resumedBeats.push(d));
    const r = (await second.run(annotateUnit, task)) as AnnotateResult;
    assert.equal(r.resumedFrom, 6);
    assert.equal(r.embeddedNow, 4);
    assert.deepEqual(
      resumedBeats.map((b) => b.done),
      [9, 10],
    );

    const cleanDir = clean.layout.unitDir(clean.units[0]!);
    assert.deepEqual(readLabels(unitDir), readLabels(cleanDir));
    const a = bytesToRows(fs.readFileSync(path.join(unitDir, 'embeddings.f32')));
    const b = bytesToRows(fs.readFileSync(path.join(cleanDir, 'embeddings.f32')));
    assert.equal(a.length, b.length);
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5, `value ${i}: ${v} vs ${b[i]}`));
  });

  it('ignores heartbeat details of other work (another model) and starts over', async () => {
    const other = await synthetic('other');
    await ensureAnnotationModels(other.release);
    const unitDir = other.layout.unitDir(other.units[0]!);
    fs.writeFileSync(path.join(unitDir, EMBEDDINGS_PARTIAL), Buffer.alloc(64 * 4 * 6));
    const details: AnnotateProgress = {
      kind: 'annotate-progress',
      dim: 64,
      rows: FIGURES,
      modelSha256: 'another-model',
      imagesSha256: 'x',
      done: 6,
      provider: 'cpu',
    };
    const env = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: details });
    const r = (await env.run(annotateUnit, { release: other.release, unitId: other.units[0]! })) as AnnotateResult;
    assert.equal(r.resumedFrom, 0);
    assert.equal(r.embeddedNow, FIGURES);
    assert.deepEqual(readLabels(unitDir), readLabels(clean.layout.unitDir(clean.units[0]!)));
  });

  it('quarantines an image that cannot be decoded and labels the rest of its batch', async () => {
    const bad = await synthetic('corrupt', { corrupt: ['PMC1001_1_0'] });
    await ensureAnnotationModels(bad.release);
    const unitId = bad.units[0]!;
    const r = await annotateUnit({ release: bad.release, unitId });
    assert.deepEqual([r.images, r.labelled, r.failed], [FIGURES, FIGURES - 1, 1]);
    const unitDir = bad.layout.unitDir(unitId);
    const q = fs
      .readFileSync(bad.layout.quarantineFile(unitId, 'annotate'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(q.length, 1);
    assert.deepEqual([q[0].figure, q[0].stage, q[0].reason], ['PMC1001_1_0', 'annotate', 'embedding-failed']);
    assert.match(q[0].detail, /decode failed/);
    const labels = readLabels(unitDir);
    assert.ok(!labels.some((l) => l.key === 'PMC1001_1_0'));
    // Its batch-mates got the same labels as in the clean run.
    const cleanLabels = new Map(readLabels(clean.layout.unitDir(clean.units[0]!)).map((l) => [l.key, l]));
    for (const l of labels) assert.deepEqual(l, cleanLabels.get(l.key));
    const rows = bytesToRows(fs.readFileSync(path.join(unitDir, 'embeddings.f32')));
    const key0 = 2; // PMC1001 is the second article: figures 2 and 3
    assert.ok(Number.isNaN(rows[key0 * 64]!) && Number.isFinite(rows[(key0 + 1) * 64]!));
  });

  it('reports the fallback in the stage result when the configured providers start with an unavailable one', async () => {
    const fb = await synthetic('fallback');
    await ensureAnnotationModels(fb.release);
    const saved = process.env.ORT_EXECUTION_PROVIDERS;
    process.env.ORT_EXECUTION_PROVIDERS = 'cuda,webgpu,cpu';
    try {
      const r = await annotateUnit({ release: fb.release, unitId: fb.units[0]! });
      assert.equal(r.provider, 'cpu');
      assert.deepEqual(
        r.fallbacks!.map((f) => f.split(':')[0]),
        ['cuda', 'webgpu'],
      );
      assert.ok(r.fallbacks!.every((f) => f.length > 'webgpu: '.length));
    } finally {
      if (saved === undefined) delete process.env.ORT_EXECUTION_PROVIDERS;
      else process.env.ORT_EXECUTION_PROVIDERS = saved;
    }
  });

  it('runs an fp16 model through the same path: half input, float32 embeddings close to the fp32 model', async () => {
    const half = await synthetic('fp16', {
      annotate: { batchSize: BATCH, modelPath: 'models/tiny-vit-seed1-fp16.onnx' },
    });
    const models = await ensureAnnotationModels(half.release);
    assert.match(models.modelPath, /fp16\.onnx$/);
    const r = await annotateUnit({ release: half.release, unitId: half.units[0]! });
    assert.equal(r.inputType, 'float16');
    assert.equal(r.labelled, FIGURES);
    const a = bytesToRows(fs.readFileSync(path.join(half.layout.unitDir(half.units[0]!), 'embeddings.f32')));
    const b = bytesToRows(fs.readFileSync(path.join(clean.layout.unitDir(clean.units[0]!), 'embeddings.f32')));
    let max = 0;
    a.forEach((v, i) => (max = Math.max(max, Math.abs(v - b[i]!))));
    assert.ok(max < 5e-3, `fp16 vs fp32 max abs diff ${max}`);
  });
});
