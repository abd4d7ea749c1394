/**
 * Image embedder: sharp preprocessing + an onnxruntime-node session, batched.
 *
 * Preprocessing mirrors the original labeller (biomedica-etl.md §8): decode -> RGB -> 224x224 squash
 * resize (no aspect keep, bilinear-class kernel with antialiasing) -> CHW float in [0,1], with NO
 * ImageNet mean/std normalisation. Model outputs are returned untouched (any normalisation is the
 * model's business; see tiny-vit.ts).
 *
 * Decoding/resizing runs in libvips worker threads (sharp), and session.run() runs on onnxruntime's
 * thread pool, so the JS thread only copies bytes; the next batch is preprocessed while the current
 * one is in the model.
 */
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

export const DEFAULT_IMAGE_SIZE = 224;

export interface PreprocessOptions {
  /** Square output side in pixels (default 224). */
  size?: number;
}

/**
 * Decode an image (JPEG/PNG/GIF/WebP/TIFF...) into a CHW float32 tensor body of length 3*size*size.
 * Transparency is flattened onto white. Note: PIL's convert('RGB'), used upstream, drops alpha
 * instead, so fully transparent pixels can differ from the original for RGBA figures.
 * EXIF orientation is deliberately NOT applied, matching PIL's Image.open without exif_transpose.
 */
export async function preprocessImage(bytes: Buffer, opts: PreprocessOptions = {}): Promise<Float32Array> {
  const size = opts.size ?? DEFAULT_IMAGE_SIZE;
  if (!Number.isInteger(size) || size <= 0) throw new Error(`preprocessImage: bad size ${size}`);
  const { data, info } = await sharp(bytes, { failOn: 'error', animated: false })
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace('srgb')
    .resize(size, size, { fit: 'fill', kernel: 'linear' })
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size) {
    throw new Error(`preprocessImage: expected ${size}x${size}, sharp produced ${info.width}x${info.height}`);
  }
  const channels = info.channels;
  if (channels !== 3 && channels !== 1) throw new Error(`preprocessImage: unexpected ${channels} channels`);
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  // HWC uint8 -> CHW float; a single-band result (grey) is replicated into R, G and B.
  for (let p = 0; p < plane; p++) {
    const base = p * channels;
    for (let c = 0; c < 3; c++) out[c * plane + p] = data[base + (channels === 3 ? c : 0)] / 255;
  }
  return out;
}

export interface EmbedderOptions {
  /** Path to an ONNX model with one float32 input [batch,3,H,W] and one float32 output [batch,dim]. */
  modelPath: string;
  /** Execution providers to try in order; the first whose session creation succeeds wins (default ['cpu']). */
  executionProviders?: string[];
  /** Images per session.run (default 16). The last batch runs short; the batch dim is dynamic. */
  batchSize?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, i.e. physical cores). */
  intraOpNumThreads?: number;
  /** Which output holds the embedding when the model has several (e.g. "pooler_output" of an HF export). */
  outputName?: string;
}

export interface Embedder {
  /** The execution provider actually in use (after any fallback). */
  provider: string;
  /** Embedding width, from the model's output shape. */
  dim: number;
  /** Square input side the model expects (from its input shape, else 224). */
  imageSize: number;
  /** Providers that were tried and failed before `provider`, with the reason. */
  fallbacks: Array<{ provider: string; error: string }>;
  /** Embed images in order; `onBatch` gets the cumulative number of images done after each batch. */
  embed(images: Buffer[], onBatch?: (done: number) => void): Promise<Float32Array[]>;
  release(): Promise<void>;
}

/** Open a session on the first working provider; a missing provider library (e.g. CUDA here) throws at creation. */
async function openSession(
  modelPath: string,
  providers: string[],
  intraOpNumThreads: number | undefined,
): Promise<{ session: ort.InferenceSession; provider: string; fallbacks: Embedder['fallbacks'] }> {
  const fallbacks: Embedder['fallbacks'] = [];
  for (const provider of providers) {
    try {
      const session = await ort.InferenceSession.create(modelPath, {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',
        ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
      });
      return { session, provider, fallbacks };
    } catch (err) {
      fallbacks.push({ provider, error: err instanceof Error ? err.message : String(err) });
    }
  }
  const detail = fallbacks.map((f) => `${f.provider}: ${f.error}`).join('; ');
  throw new Error(`createEmbedder: no execution provider could load ${modelPath} (${detail})`);
}

function tensorMeta(meta: readonly ort.InferenceSession.ValueMetadata[], which: string, name?: string): ort.InferenceSession.TensorValueMetadata {
  const m = name !== undefined ? meta.find((x) => x.name === name) : meta.length === 1 ? meta[0] : undefined;
  if (!m) {
    const names = meta.map((x) => x.name).join(', ');
    throw new Error(`createEmbedder: cannot pick the ${which}${name ? ` "${name}"` : ''} among [${names}]`);
  }
  if (!m.isTensor || m.type !== 'float32') throw new Error(`createEmbedder: ${which} ${m.name} must be a float32 tensor`);
  return m;
}

export async function createEmbedder(opts: EmbedderOptions): Promise<Embedder> {
  const providers = opts.executionProviders?.length ? opts.executionProviders : ['cpu'];
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`createEmbedder: bad batchSize ${batchSize}`);

  const { session, provider, fallbacks } = await openSession(opts.modelPath, providers, opts.intraOpNumThreads);
  try {
    const input = tensorMeta(session.inputMetadata, 'input');
    const output = tensorMeta(session.outputMetadata, 'output', opts.outputName);
    const [, channels, h, w] = input.shape;
    if (input.shape.length !== 4 || channels !== 3) throw new Error(`createEmbedder: input shape [${input.shape.join(',')}] is not [batch,3,H,W]`);
    if (typeof h === 'number' && typeof w === 'number' && h !== w) throw new Error(`createEmbedder: non-square input ${h}x${w}`);
    const imageSize = typeof h === 'number' ? h : DEFAULT_IMAGE_SIZE;
    const last = output.shape[output.shape.length - 1];
    if (typeof last !== 'number') throw new Error(`createEmbedder: output ${output.name} has no static width`);
    return makeEmbedder(session, input.name, output.name, provider, fallbacks, last, imageSize, batchSize);
  } catch (err) {
    await session.release();
    throw err;
  }
}

function makeEmbedder(
  session: ort.InferenceSession,
  inputName: string,
  outputName: string,
  provider: string,
  fallbacks: Embedder['fallbacks'],
  dim: number,
  imageSize: number,
  batchSize: number,
): Embedder {
  const plane = 3 * imageSize * imageSize;

  // Decode one batch concurrently (sharp runs each on a libvips thread) into one contiguous tensor body.
  const prepare = async (images: Buffer[]): Promise<Float32Array> => {
    const body = new Float32Array(images.length * plane);
    const chw = await Promise.all(images.map((img) => preprocessImage(img, { size: imageSize })));
    chw.forEach((x, i) => body.set(x, i * plane));
    return body;
  };

  const runBatch = async (body: Float32Array, n: number): Promise<Float32Array[]> => {
    const feeds = { [inputName]: new ort.Tensor('float32', body, [n, 3, imageSize, imageSize]) };
    const result = await session.run(feeds, [outputName]);
    const out = result[outputName];
    try {
      const data = out.data as Float32Array;
      if (data.length !== n * dim) throw new Error(`embedder: got ${data.length} values for ${n} images of dim ${dim}`);
      // slice() copies, so each embedding owns its memory once the output tensor is disposed.
      return Array.from({ length: n }, (_, i) => data.slice(i * dim, (i + 1) * dim));
    } finally {
      out.dispose();
    }
  };

  return {
    provider,
    dim,
    imageSize,
    fallbacks,
    async embed(images, onBatch) {
      const batches: Buffer[][] = [];
      for (let i = 0; i < images.length; i += batchSize) batches.push(images.slice(i, i + batchSize));
      const results: Float32Array[] = [];
      // Two-stage pipeline: decode batch k+1 while batch k runs in the model.
      let pending = batches.length > 0 ? prepare(batches[0]) : undefined;
      for (let k = 0; k < batches.length; k++) {
        const body = await pending!;
        pending = k + 1 < batches.length ? prepare(batches[k + 1]) : undefined;
        // Swallow a rejection of the prefetch until it is awaited, so a model error is reported first.
        pending?.catch(() => undefined);
        results.push(...(await runBatch(body, batches[k].length)));
        onBatch?.(results.length);
      }
      return results;
    },
    async release() {
      await session.release();
    },
  };
}
