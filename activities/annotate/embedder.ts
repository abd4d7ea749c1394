/**
 * Image embedder: sharp preprocessing + an onnxruntime-node session, batched and pipelined.
 *
 * Preprocessing mirrors the original labeller by default (docs/annotation.md): decode -> RGB -> 224x224
 * squash resize (no aspect keep, bilinear-class kernel with antialiasing) -> CHW in [0,1], with NO ImageNet
 * mean/std normalisation. It is configurable (`PreprocessConfig`): per call, or for a model by a sidecar
 * `<model>.preprocess.json` next to the .onnx file (scripts/export_dinov2_onnx.py writes one).
 *
 * Models may take and return float32 or float16 tensors (an fp16 export halves the checkpoint). With no
 * Float16Array in Node 20, onnxruntime-node 1.30 takes a Uint16Array of half bit patterns for a 'float16'
 * tensor and returns one (half.ts); embeddings are always handed back as float32.
 *
 * Threads: sharp decodes and resizes on libuv's thread pool; onnxruntime-node's session.run() is synchronous
 * in the binding (it runs inside a setImmediate and blocks the JS thread while the EP computes). The pipeline
 * therefore reads batches k+1..k+prefetch and issues their decodes BEFORE it calls run() for batch k: libvips keeps
 * decoding on the pool threads while the JS thread sits in inference, and when run() returns the next batch is
 * already decoded. `trace` records that order (tested in test/annotate.test.ts). The pool has UV_THREADPOOL_SIZE
 * threads (4 by default): on a many-core GPU host, raise it so decoding keeps up with the GPU.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { float32ToHalfBits, halfToFloat32Array } from './half';
import {
  DecodedRgb,
  decodeRgb,
  loadPreprocessSidecar,
  parsePreprocessConfig,
  type PreprocessConfig,
  type PreprocessConfigInput,
} from './preprocess';

export {
  DEFAULT_IMAGE_SIZE,
  PreprocessConfigSchema,
  decodeRgb,
  loadPreprocessSidecar,
  parsePreprocessConfig,
  preprocessSidecarPath,
  type PreprocessConfig,
  type PreprocessConfigInput,
} from './preprocess';

type Body = Float32Array | Uint16Array;

/** Per-channel lookup tables uint8 -> model value (float32, or half bits), so HWC -> CHW is one table read per value. */
function channelTables(cfg: PreprocessConfig, type: 'float32' | 'float16'): Body[] {
  return [0, 1, 2].map((c) => {
    const values = Array.from({ length: 256 }, (_, v) => {
      const x = v / 255;
      return cfg.mean && cfg.std ? (x - cfg.mean[c]!) / cfg.std[c]! : cfg.mean ? x - cfg.mean[c]! : x;
    });
    return type === 'float16' ? Uint16Array.from(values, float32ToHalfBits) : Float32Array.from(values);
  });
}

/** HWC uint8 RGB -> CHW at `offset` of `out`, through the channel tables. */
function fillChw(rgbBytes: Buffer, out: Body, offset: number, tables: Body[], plane: number): void {
  const [tr, tg, tb] = tables as [Body, Body, Body];
  for (let p = 0, q = 0; p < plane; p++, q += 3) {
    out[offset + p] = tr[rgbBytes[q]!]!;
    out[offset + plane + p] = tg[rgbBytes[q + 1]!]!;
    out[offset + 2 * plane + p] = tb[rgbBytes[q + 2]!]!;
  }
}

/**
 * Decode an image (JPEG/PNG/GIF/WebP/TIFF...) into a CHW float32 tensor body of length 3*size*size.
 * Transparency is flattened onto white (configurable). Note: PIL's convert('RGB'), used upstream, drops alpha
 * instead, so fully transparent pixels can differ from the original for RGBA figures.
 * EXIF orientation is deliberately NOT applied, matching PIL's Image.open without exif_transpose.
 */
export async function preprocessImage(bytes: Buffer, opts: PreprocessConfigInput = {}): Promise<Float32Array> {
  if (opts.size !== undefined && (!Number.isInteger(opts.size) || opts.size <= 0))
    throw new Error(`preprocessImage: bad size ${opts.size}`);
  const cfg = parsePreprocessConfig(opts);
  const plane = cfg.size * cfg.size;
  const out = new Float32Array(3 * plane);
  fillChw(await decodeRgb(bytes, cfg), out, 0, channelTables(cfg, 'float32'), plane);
  return out;
}

export interface EmbedderOptions {
  /** Path to an ONNX model with one input [batch,3,H,W] and an output [batch,dim], float32 or float16. */
  modelPath: string;
  /** Execution providers to try in order, e.g. ['cuda', 'webgpu', 'cpu'] ('cuda:1' picks a device); the first that loads wins (default ['cpu']). */
  executionProviders?: string[];
  /** Images per session.run (default 16). The last batch runs short; the batch dim is dynamic. */
  batchSize?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, i.e. physical cores). */
  intraOpNumThreads?: number;
  /** Which output holds the embedding when the model has several (e.g. "pooler_output" of an HF export). */
  outputName?: string;
  /** Preprocessing; default: the model's sidecar `<model>.preprocess.json` if present, else the original's. */
  preprocess?: PreprocessConfigInput;
  /**
   * Let onnxruntime's intra-op threads spin between runs (default false): spinning threads keep cores busy after
   * each batch, which on the cpu EP starves the libvips threads decoding the next batch.
   */
  allowSpinning?: boolean;
  /** Batches decoded ahead of the one in inference (default 2; at least 1). More helps small batches on many cores. */
  prefetchBatches?: number;
}

export type TraceEvent = {
  event: 'load' | 'decode-issued' | 'decoded' | 'run-start' | 'run-end';
  batch: number;
  t: number;
};

export interface EmbeddedBatch<T> {
  /** The source item this batch came from. */
  item: T;
  /** 0-based batch number in this stream. */
  batch: number;
  /** One per image: the embedding, or null when that image failed (see errors). */
  embeddings: Array<Float32Array | null>;
  errors: Array<string | null>;
  /** Wall-clock milliseconds in session.run for this batch (the JS thread is blocked meanwhile). */
  runMs: number;
}

export interface Embedder {
  /** The execution provider actually in use (after any fallback). */
  provider: string;
  /** Embedding width, from the model's output shape. */
  dim: number;
  /** Square input side the model expects (from its input shape, else the preprocessing size). */
  imageSize: number;
  /** Tensor types of the model's input and chosen output. */
  inputType: 'float32' | 'float16';
  outputType: 'float32' | 'float16';
  /** The preprocessing in use, and where it came from. */
  preprocess: PreprocessConfig;
  preprocessSource: 'options' | 'sidecar' | 'default';
  /** sha256 of the model file: identifies the embedding space (stored with every unit's embeddings). */
  modelSha256: string;
  batchSize: number;
  /** Providers that were tried and failed before `provider`, with the reason. */
  fallbacks: Array<{ provider: string; error: string }>;
  /** Embed images in order (throws on the first image that fails); `onBatch` gets the cumulative count done. */
  embed(images: Buffer[], onBatch?: (done: number) => void): Promise<Float32Array[]>;
  /**
   * The pipelined stream: each source item is one batch whose images `load` reads (an Error entry marks an
   * image that could not be read; a DecodedRgb one is already the model's input, decoded by the images stage). Yields per-image embeddings or errors, batch by batch, in order; a bad image
   * never takes its batch with it. Decodes run `prefetchBatches` batches ahead of inference, loads one further.
   */
  embedBatches<T>(
    source: Iterable<T> | AsyncIterable<T>,
    load: (item: T) => Promise<Array<Buffer | DecodedRgb | Error>>,
    opts?: { trace?: (e: TraceEvent) => void; prefetchBatches?: number },
  ): AsyncGenerator<EmbeddedBatch<T>>;
  release(): Promise<void>;
}

function parseProvider(spec: string): { name: string; option: string | ort.InferenceSession.ExecutionProviderConfig } {
  const [name, device] = spec.split(':') as [string, string | undefined];
  if (device === undefined) return { name, option: name };
  const deviceId = Number(device);
  if (!Number.isInteger(deviceId) || deviceId < 0)
    throw new Error(`bad execution provider ${JSON.stringify(spec)} (want name or name:deviceId)`);
  return { name, option: { name, deviceId } as ort.InferenceSession.ExecutionProviderConfig };
}

/** Open a session on the first working provider; a missing provider library (e.g. CUDA here) throws at creation. */
async function openSession(
  modelPath: string,
  providers: string[],
  intraOpNumThreads: number | undefined,
  allowSpinning: boolean,
): Promise<{ session: ort.InferenceSession; provider: string; fallbacks: Embedder['fallbacks'] }> {
  const fallbacks: Embedder['fallbacks'] = [];
  for (const spec of providers) {
    try {
      const { option } = parseProvider(spec);
      const session = await ort.InferenceSession.create(modelPath, {
        executionProviders: [option],
        graphOptimizationLevel: 'all',
        ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
        extra: {
          session: {
            intra_op: { allow_spinning: allowSpinning ? '1' : '0' },
            inter_op: { allow_spinning: allowSpinning ? '1' : '0' },
          },
        },
      });
      return { session, provider: spec, fallbacks };
    } catch (err) {
      fallbacks.push({ provider: spec, error: err instanceof Error ? err.message : String(err) });
    }
  }
  const detail = fallbacks.map((f) => `${f.provider}: ${f.error}`).join('; ');
  throw new Error(`createEmbedder: no execution provider could load ${modelPath} (${detail})`);
}

function tensorMeta(
  meta: readonly ort.InferenceSession.ValueMetadata[],
  which: string,
  name?: string,
): ort.InferenceSession.TensorValueMetadata & { type: 'float32' | 'float16' } {
  const m = name !== undefined ? meta.find((x) => x.name === name) : meta.length === 1 ? meta[0] : undefined;
  if (!m) {
    const names = meta.map((x) => x.name).join(', ');
    throw new Error(`createEmbedder: cannot pick the ${which}${name ? ` "${name}"` : ''} among [${names}]`);
  }
  if (!m.isTensor || (m.type !== 'float32' && m.type !== 'float16'))
    throw new Error(`createEmbedder: ${which} ${m.name} must be a float32 or float16 tensor`);
  return m as ort.InferenceSession.TensorValueMetadata & { type: 'float32' | 'float16' };
}

/** sha256 of a file, streamed (a DINOv2 export is 0.6-1.2 GB). */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function createEmbedder(opts: EmbedderOptions): Promise<Embedder> {
  const providers = opts.executionProviders?.length ? opts.executionProviders : ['cpu'];
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`createEmbedder: bad batchSize ${batchSize}`);
  const sidecar = opts.preprocess ? null : await loadPreprocessSidecar(opts.modelPath);
  let preprocess = opts.preprocess ? parsePreprocessConfig(opts.preprocess) : (sidecar ?? parsePreprocessConfig({}));
  const preprocessSource: Embedder['preprocessSource'] = opts.preprocess ? 'options' : sidecar ? 'sidecar' : 'default';
  const modelSha256 = await sha256OfFile(opts.modelPath);

  const { session, provider, fallbacks } = await openSession(
    opts.modelPath,
    providers,
    opts.intraOpNumThreads,
    opts.allowSpinning ?? false,
  );
  try {
    const input = tensorMeta(session.inputMetadata, 'input');
    const output = tensorMeta(session.outputMetadata, 'output', opts.outputName);
    const [, channels, h, w] = input.shape;
    if (input.shape.length !== 4 || channels !== 3)
      throw new Error(`createEmbedder: input shape [${input.shape.join(',')}] is not [batch,3,H,W]`);
    if (typeof h === 'number' && typeof w === 'number' && h !== w)
      throw new Error(`createEmbedder: non-square input ${h}x${w}`);
    if (typeof h === 'number' && h !== preprocess.size) {
      // A static model size wins over a default preprocessing size; an explicit mismatch is an error.
      if (preprocessSource !== 'default')
        throw new Error(`createEmbedder: preprocess size ${preprocess.size} but the model takes ${h}x${h}`);
      preprocess = { ...preprocess, size: h };
    }
    const last = output.shape[output.shape.length - 1];
    if (typeof last !== 'number') throw new Error(`createEmbedder: output ${output.name} has no static width`);
    return makeEmbedder({
      session,
      inputName: input.name,
      outputName: output.name,
      inputType: input.type,
      outputType: output.type,
      provider,
      fallbacks,
      dim: last,
      preprocess,
      preprocessSource,
      modelSha256,
      batchSize,
      prefetchBatches: Math.max(1, opts.prefetchBatches ?? 2),
    });
  } catch (err) {
    await session.release();
    throw err;
  }
}

interface PreparedBatch {
  n: number;
  /** Tensor body of the images that decoded, packed in order. */
  body: Body;
  /** Image index -> position in body, or -1 when it failed (errors[i] says why). */
  slot: number[];
  errors: Array<string | null>;
}

function makeEmbedder(p: {
  session: ort.InferenceSession;
  inputName: string;
  outputName: string;
  inputType: 'float32' | 'float16';
  outputType: 'float32' | 'float16';
  provider: string;
  fallbacks: Embedder['fallbacks'];
  dim: number;
  preprocess: PreprocessConfig;
  preprocessSource: Embedder['preprocessSource'];
  modelSha256: string;
  batchSize: number;
  prefetchBatches: number;
}): Embedder {
  const { session, dim, preprocess: cfg } = p;
  const size = cfg.size;
  const plane = size * size;
  const tables = channelTables(cfg, p.inputType);

  // Issue every decode of a batch now (sharp queues them on libuv's pool synchronously); settles later.
  const prepare = (images: Array<Buffer | DecodedRgb | Error>): Promise<PreparedBatch> => {
    const decodes = images.map((img) =>
      img instanceof Error
        ? Promise.reject(img)
        : img instanceof DecodedRgb
          ? img.rgb.length === 3 * plane
            ? Promise.resolve(img.rgb)
            : Promise.reject(new Error(`decoded input of ${img.rgb.length} bytes, not ${size}x${size}x3`))
          : decodeRgb(img, cfg),
    );
    return Promise.allSettled(decodes).then((settled) => {
      const ok = settled.filter((s) => s.status === 'fulfilled').length;
      const body: Body = p.inputType === 'float16' ? new Uint16Array(ok * 3 * plane) : new Float32Array(ok * 3 * plane);
      const slot: number[] = [];
      const errors: Array<string | null> = [];
      let j = 0;
      for (const s of settled) {
        if (s.status === 'fulfilled') {
          fillChw(s.value, body, j * 3 * plane, tables, plane);
          slot.push(j++);
          errors.push(null);
        } else {
          slot.push(-1);
          errors.push(`decode failed: ${s.reason instanceof Error ? s.reason.message : String(s.reason)}`);
        }
      }
      return { n: images.length, body, slot, errors };
    });
  };

  const runTensor = async (body: Body, n: number): Promise<Float32Array[]> => {
    const tensor =
      p.inputType === 'float16'
        ? new ort.Tensor('float16', body as Uint16Array, [n, 3, size, size])
        : new ort.Tensor('float32', body as Float32Array, [n, 3, size, size]);
    const result = await session.run({ [p.inputName]: tensor }, [p.outputName]);
    const out = result[p.outputName]!;
    try {
      const data = out.data as Float32Array | Uint16Array;
      if (data.length !== n * dim) throw new Error(`embedder: got ${data.length} values for ${n} images of dim ${dim}`);
      // Copies, so each embedding owns its memory once the output tensor is disposed.
      return Array.from({ length: n }, (_, i) =>
        p.outputType === 'float16'
          ? halfToFloat32Array(data, i * dim, (i + 1) * dim)
          : (data as Float32Array).slice(i * dim, (i + 1) * dim),
      );
    } finally {
      out.dispose();
    }
  };

  /** Inference for one prepared batch; if the whole batch fails, each image is retried alone to isolate the culprit. */
  const runPrepared = async (
    b: PreparedBatch,
  ): Promise<{ embeddings: Array<Float32Array | null>; errors: Array<string | null> }> => {
    const ok = b.slot.filter((s) => s >= 0).length;
    const errors = [...b.errors];
    let outs: Array<Float32Array | null> = [];
    if (ok > 0) {
      try {
        outs = await runTensor(b.body, ok);
      } catch {
        outs = [];
        for (let j = 0; j < ok; j++) {
          try {
            outs.push((await runTensor(b.body.slice(j * 3 * plane, (j + 1) * 3 * plane), 1))[0]!);
          } catch (err) {
            outs.push(null);
            errors[b.slot.indexOf(j)] = `inference failed: ${err instanceof Error ? err.message : String(err)}`;
          }
        }
      }
    }
    const embeddings = b.slot.map((s) => (s >= 0 ? outs[s]! : null));
    embeddings.forEach((e, i) => {
      if (e && !e.every(Number.isFinite)) {
        embeddings[i] = null;
        errors[i] = 'inference produced a non-finite embedding';
      }
    });
    return { embeddings, errors };
  };

  async function* embedBatches<T>(
    source: Iterable<T> | AsyncIterable<T>,
    load: (item: T) => Promise<Array<Buffer | DecodedRgb | Error>>,
    opts: { trace?: (e: TraceEvent) => void; prefetchBatches?: number } = {},
  ): AsyncGenerator<EmbeddedBatch<T>> {
    const trace = (event: TraceEvent['event'], batch: number) => opts.trace?.({ event, batch, t: performance.now() });
    const iterator: AsyncIterator<T> | Iterator<T> =
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<T>)[Symbol.asyncIterator]()
        : (source as Iterable<T>)[Symbol.iterator]();
    let nextIndex = 0;
    type Loaded = { batch: number; item: T; images: Array<Buffer | DecodedRgb | Error> };
    const startLoad = async (): Promise<Loaded | null> => {
      const r = await iterator.next();
      if (r.done) return null;
      const batch = nextIndex++;
      const images = await load(r.value);
      trace('load', batch);
      return { batch, item: r.value, images };
    };
    const issueDecode = (l: Loaded): Promise<PreparedBatch> => {
      trace('decode-issued', l.batch);
      const pr = prepare(l.images).then((b) => {
        trace('decoded', l.batch);
        return b;
      });
      pr.catch(() => undefined); // awaited below; never an unhandled rejection while a run is in progress
      return pr;
    };

    // Batches whose decode is issued, oldest first; the head is the one to run next. Before the head runs, the
    // next `depth` batches' bytes are read and their decodes issued, so libvips works while inference blocks the JS
    // thread (a load's completion callback cannot run during inference, hence waiting for the bytes here).
    const depth = opts.prefetchBatches ?? p.prefetchBatches;
    const queue: Array<{ loaded: Loaded; decoding: Promise<PreparedBatch> }> = [];
    let loading: Promise<Loaded | null> | null = startLoad();
    const fill = async () => {
      while (loading && queue.length < depth + 1) {
        const l = await loading;
        if (!l) {
          loading = null;
          break;
        }
        queue.push({ loaded: l, decoding: issueDecode(l) });
        loading = startLoad();
        loading.catch(() => undefined);
      }
    };
    await fill();
    while (queue.length > 0) {
      const head = queue[0]!;
      const prepared = await head.decoding;
      await fill();
      trace('run-start', head.loaded.batch);
      const t0 = performance.now();
      const { embeddings, errors } = await runPrepared(prepared);
      const runMs = performance.now() - t0;
      trace('run-end', head.loaded.batch);
      queue.shift();
      yield { item: head.loaded.item, batch: head.loaded.batch, embeddings, errors, runMs };
    }
  }

  return {
    provider: p.provider,
    dim,
    imageSize: size,
    inputType: p.inputType,
    outputType: p.outputType,
    preprocess: cfg,
    preprocessSource: p.preprocessSource,
    modelSha256: p.modelSha256,
    batchSize: p.batchSize,
    fallbacks: p.fallbacks,
    embedBatches,
    async embed(images, onBatch) {
      const slices: Buffer[][] = [];
      for (let i = 0; i < images.length; i += p.batchSize) slices.push(images.slice(i, i + p.batchSize));
      const results: Float32Array[] = [];
      for await (const b of embedBatches(slices, async (s) => s)) {
        const bad = b.errors.findIndex((e) => e !== null);
        if (bad >= 0) throw new Error(`image ${results.length + bad}: ${b.errors[bad]}`);
        results.push(...(b.embeddings as Float32Array[]));
        onBatch?.(results.length);
      }
      return results;
    },
    async release() {
      await session.release();
    },
  };
}
