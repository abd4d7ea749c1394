/**
 * Annotation throughput: preprocessing (sharp decode + resize + CHW), inference per execution provider, fp32 vs
 * fp16, at a few batch sizes, and the pipelined embedder end to end (decode of batch n+1 overlapping inference of
 * batch n), and what the gpu host saves when the images stage has made the model's input (activities/images/
 * model-inputs.ts: inflating a record instead of decoding the JPEG).
 *
 *   npm run bench:annotate                                   # the generated tiny ViT, fp32 and fp16
 *   npm run bench:annotate -- --batches 1,8,32 --images 96 --seconds 2
 *   npm run bench:annotate -- --intra 1                      # inference on one core, decoding on the others
 *   npm run bench:annotate -- --model models/dinov2-vitl14-reg.onnx --model16 models/dinov2-vitl14-reg-fp16.onnx \
 *       --providers cuda,webgpu,cpu                          # an operator's DINOv2 export, on a GPU machine
 *
 * Images: the real figures in ../shared/fixtures/real/images plus deterministic generated figures at PMC-like sizes
 * (600-1800 px JPEGs: charts and noisy micrograph-like panels). Providers that cannot start here are reported with
 * the reason onnxruntime gave.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { createEmbedder, decodeRgb, parsePreprocessConfig } from '../activities/annotate/embedder';
import { DecodedRgb } from '../activities/annotate/preprocess';
import { float32ToHalfArray } from '../activities/annotate/half';
import { buildTinyVitModel } from '../activities/annotate/tiny-vit';
import { fixturePaths } from '../config/paths';
import { arg, nArg, xorshift32 } from './common';

const IMAGES = nArg('images', 64);
const SECONDS = nArg('seconds', 1.5);
const BATCHES = (arg('batches') ?? '1,8,32').split(',').map(Number);
const PROVIDERS = (arg('providers') ?? 'cpu,cuda,webgpu').split(',').map((p) => p.trim());
/** onnxruntime intra-op threads (default: onnxruntime's choice, one per core). */
const INTRA = arg('intra') !== undefined ? Number(arg('intra')) : undefined;

async function generatedFigure(rand: () => number): Promise<Buffer> {
  const w = 600 + Math.floor(rand() * 1200);
  const h = Math.floor(w * (0.5 + rand() * 0.5));
  const raw = Buffer.alloc(w * h * 3, 255);
  if (rand() < 0.5) {
    // chart: bars and axes on white
    const bars = 5 + Math.floor(rand() * 10);
    for (let b = 0; b < bars; b++) {
      const top = Math.floor(h * (0.1 + 0.8 * rand()));
      const c = [Math.floor(rand() * 200), Math.floor(rand() * 200), Math.floor(rand() * 200)];
      for (let y = top; y < h - 10; y++)
        for (let x = Math.floor(((b + 0.2) * w) / bars); x < Math.floor(((b + 0.8) * w) / bars); x++)
          raw.set(c, (y * w + x) * 3);
    }
  } else {
    // micrograph-like: noisy smooth texture
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const v = 128 + 60 * Math.sin(x / 17) * Math.cos(y / 23) + (rand() - 0.5) * 80;
        raw.set([v, v * 0.6, 255 - v], (y * w + x) * 3);
      }
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

async function loadImages(): Promise<Buffer[]> {
  const real: Buffer[] = [];
  const dir = fixturePaths.images();
  if (fs.existsSync(dir)) {
    for (const d of fs.readdirSync(dir))
      for (const f of fs.readdirSync(path.join(dir, d))) real.push(fs.readFileSync(path.join(dir, d, f)));
  }
  const rand = xorshift32(7);
  const out = [...real];
  while (out.length < IMAGES) out.push(await generatedFigure(rand));
  return out.slice(0, IMAGES);
}

/** Repeats `fn` (which handles `per` images) until SECONDS have passed; images per second. */
async function rate(per: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up
  const t0 = performance.now();
  let n = 0;
  do {
    await fn();
    n += per;
  } while (performance.now() - t0 < SECONDS * 1000);
  return n / ((performance.now() - t0) / 1000);
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

async function main(): Promise<void> {
  ort.env.logLevel = 'fatal'; // a provider that cannot start is reported below, with onnxruntime's reason
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-annotate-'));
  try {
    const images = await loadImages();
    const mb = images.reduce((a, b) => a + b.length, 0) / 1e6;
    console.log(
      `host: ${os.cpus().length} cpus (${os.cpus()[0]?.model.trim()}), node ${process.version}, onnxruntime-node ${ort.env.versions.common}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, sharp concurrency ${sharp.concurrency()}`,
    );
    console.log(
      `images: ${images.length} (${mb.toFixed(1)} MB of JPEG/PNG/GIF; real fixtures + generated 600-1800 px figures)`,
    );

    // --- preprocessing
    const cfg = parsePreprocessConfig({});
    console.log('\npreprocessing: decode -> RGB -> 224x224 squash (linear) -> CHW float32 [0,1]');
    const serial = await rate(images.length, async () => {
      for (const img of images) await decodeRgb(img, cfg);
    });
    const parallel = await rate(images.length, () => Promise.all(images.map((img) => decodeRgb(img, cfg))));
    console.log(`  one image at a time:            ${fmt(serial)} images/s`);
    console.log(`  all in flight (libuv threads):  ${fmt(parallel)} images/s`);
    // One decode per figure: the images stage stores decodeRgb's output deflated; annotate inflates it instead.
    const inflate = promisify(zlib.inflateRaw);
    const decoded = await Promise.all(images.map((img) => decodeRgb(img, cfg)));
    const records = decoded.map((rgb) => zlib.deflateRawSync(rgb, { level: 1 }));
    const cpuMs = async (fn: () => Promise<unknown>) => {
      const c0 = process.cpuUsage();
      await fn();
      const c = process.cpuUsage(c0);
      return (c.user + c.system) / 1e3 / images.length;
    };
    const decodeMs = await cpuMs(async () => {
      for (const img of images) await decodeRgb(img, cfg);
    });
    const deflateMs = await cpuMs(async () => {
      for (const rgb of decoded) zlib.deflateRawSync(rgb, { level: 1 });
    });
    const inflateMs = await cpuMs(async () => {
      for (const r of records) await inflate(r);
    });
    const kb = (n: number) => (n / images.length / 1e3).toFixed(0);
    console.log(
      `  CPU per image: decode ${decodeMs.toFixed(2)} ms; from the images stage's input: inflate ${inflateMs.toFixed(2)} ms (deflate, on the cpu pool: ${deflateMs.toFixed(2)} ms)`,
    );
    console.log(
      `  bytes per image the gpu host reads: JPEG ${kb(mb * 1e6)} KB, input record ${kb(records.reduce((a, r) => a + r.length, 0))} KB (raw ${kb(decoded.length * decoded[0]!.length)} KB)`,
    );

    // --- models
    const models: Array<{ label: string; file: string }> = [];
    const model32 = arg('model');
    const model16 = arg('model16');
    if (model32 || model16) {
      if (model32) models.push({ label: 'fp32', file: path.resolve(model32) });
      if (model16) models.push({ label: 'fp16', file: path.resolve(model16) });
    } else {
      models.push(
        { label: 'fp32', file: path.join(tmp, 'tiny-vit-seed1.onnx') },
        { label: 'fp16', file: path.join(tmp, 'tiny-vit-seed1-fp16.onnx') },
      );
      fs.writeFileSync(models[0]!.file, buildTinyVitModel({ seed: 1 }));
      fs.writeFileSync(models[1]!.file, buildTinyVitModel({ seed: 1, dtype: 'float16' }));
      console.log(
        '\nmodel: the generated tiny ViT (Conv 14x14 patches -> 256 tokens x 64 -> MLP -> mean pool; ~0.06 GFLOP/image), fp32 and fp16',
      );
    }

    const bundled = new Map(
      (ort as unknown as { listSupportedBackends(): Array<{ name: string; bundled: boolean }> })
        .listSupportedBackends()
        .map((b) => [b.name, b.bundled]),
    );
    console.log(
      `\nexecution providers (onnxruntime-node's own list: ${[...bundled].map(([n, b]) => `${n}${b ? '' : ' (not bundled)'}`).join(', ')}):`,
    );
    const available: string[] = [];
    for (const p of PROVIDERS) {
      try {
        const e = await createEmbedder({ modelPath: models[0]!.file, executionProviders: [p] });
        await e.release();
        available.push(p);
        console.log(`  ${p}: available`);
      } catch (err) {
        const msg = (err as Error).message;
        const reason = /Failed to [^\n)]*/.exec(msg)?.[0] ?? msg.split('\n')[0]!.slice(0, 200);
        const hint =
          bundled.get(p) === false
            ? ' (its provider library is not bundled with onnxruntime-node; the operator installs it)'
            : '';
        console.log(`  ${p}: unavailable: ${reason.trim()}${hint}`);
      }
    }

    const size = 224;
    const plane = 3 * size * size;
    const maxBatch = Math.max(...BATCHES);
    const body32 = new Float32Array(maxBatch * plane);
    for (let i = 0; i < Math.min(images.length, maxBatch); i++) {
      // Real preprocessed pixels, so the numbers do not depend on a degenerate input.
      const rgb = await decodeRgb(images[i % images.length]!, cfg);
      for (let p = 0; p < size * size; p++)
        for (let c = 0; c < 3; c++) body32[i * plane + c * size * size + p] = rgb[3 * p + c]! / 255;
    }
    const body16 = float32ToHalfArray(body32);

    for (const provider of available) {
      const inferRate = new Map<string, number>();
      const threads =
        INTRA !== undefined ? `${INTRA} intra-op thread${INTRA === 1 ? '' : 's'}` : "onnxruntime's default threads";
      console.log(`\ninference only (session.run on a ready tensor), provider ${provider}, ${threads}:`);
      console.log('  precision  batch  images/s');
      for (const m of models) {
        const session = await ort.InferenceSession.create(m.file, {
          executionProviders: [provider],
          graphOptimizationLevel: 'all',
          ...(INTRA !== undefined ? { intraOpNumThreads: INTRA } : {}),
          extra: { session: { intra_op: { allow_spinning: '0' } } }, // as the embedder runs it
        });
        const input = session.inputMetadata[0]! as ort.InferenceSession.TensorValueMetadata;
        for (const b of BATCHES) {
          const tensor =
            input.type === 'float16'
              ? new ort.Tensor('float16', body16.subarray(0, b * plane), [b, 3, size, size])
              : new ort.Tensor('float32', body32.subarray(0, b * plane), [b, 3, size, size]);
          const r = await rate(b, async () => {
            const out = await session.run({ [session.inputNames[0]!]: tensor });
            for (const v of Object.values(out)) v.dispose();
          });
          inferRate.set(`${m.label}/${b}`, r);
          console.log(`  ${m.label.padEnd(9)}  ${String(b).padStart(5)}  ${fmt(r).padStart(8)}`);
        }
        await session.release();
      }

      console.log(
        `\nend to end (embedBatches: decode of the next batches overlapping inference), provider ${provider}, ${threads}:`,
      );
      console.log(
        "  precision  batch  images/s   back to back (1/decode + 1/inference)   from the images stage's inputs",
      );
      for (const m of models) {
        for (const b of BATCHES) {
          const e = await createEmbedder({
            modelPath: m.file,
            executionProviders: [provider],
            batchSize: b,
            intraOpNumThreads: INTRA,
          });
          const slices: number[] = [];
          for (let i = 0; i < images.length; i += b) slices.push(i);
          const r = await rate(images.length, async () => {
            for await (const out of e.embedBatches(slices, async (i) => images.slice(i, i + b))) void out;
          });
          const fromInputs = await rate(images.length, async () => {
            const load = async (i: number) =>
              Promise.all(records.slice(i, i + b).map(async (rec) => new DecodedRgb(await inflate(rec))));
            for await (const out of e.embedBatches(slices, load)) void out;
          });
          await e.release();
          // Without overlap each image would cost its decode plus its inference.
          const serialRate = 1 / (1 / parallel + 1 / inferRate.get(`${m.label}/${b}`)!);
          console.log(
            `  ${m.label.padEnd(9)}  ${String(b).padStart(5)}  ${fmt(r).padStart(8)}   ${fmt(serialRate).padStart(8)}                                ${fmt(fromInputs).padStart(8)}`,
          );
        }
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
