/**
 * A deterministic, ViT-shaped stand-in for the DINOv2 ViT-L/14-reg image embedder (docs/annotation.md).
 *
 * Same interface as the production model (input "pixel_values" float32 [batch,3,224,224] in [0,1],
 * output "embedding" float32 [batch,dim]) so the embedder, taxonomy and workflows can be exercised
 * end to end on CPU without the 1.2 GB checkpoint. It is NOT a trained model: weights come from a
 * seeded PRNG, so embeddings are only meaningful relative to each other.
 *
 * Graph: Conv patch embedding (kernel = stride = patch) -> Reshape [B,dim,T] -> Transpose [B,T,dim]
 * -> + position embedding -> one residual MLP block (MatMul, Add, Tanh, MatMul, Add, Add)
 * -> ReduceMean over tokens -> L2 normalisation (ReduceL2, Max(eps), Div).
 *
 * L2 normalisation lives inside the graph (not in embedder.ts) on purpose: the embedder passes model
 * outputs through untouched, as the original pipeline fed DINOv2's output straight into PCA; a unit-norm
 * output then matches the bootstrap taxonomy's unit-vector centroids (taxonomy.ts).
 */
import { float32ToHalfArray } from './half';
import { encodeModel, TensorDataType, type OnnxNode, type OnnxTensor } from './onnx-proto';

export interface TinyVitOptions {
  /** PRNG seed for all weights (default 1). */
  seed?: number;
  /** Embedding width (default 64). */
  dim?: number;
  /** Patch size, i.e. Conv kernel and stride (default 14, as in ViT-L/14). */
  patch?: number;
  /** Square input side (default 224); must be a multiple of `patch`. */
  imageSize?: number;
  /**
   * 'float32' (default), or 'float16': the same weights rounded to half, a half input and output, and every
   * node computing in half, as a DINOv2 export converted to fp16 would (the production fp16 file halves the
   * 1.2 GB checkpoint). onnxruntime's CPU EP lacks half kernels for most of these ops and runs them through
   * inserted Casts; CUDA and WebGPU run them in half.
   */
  dtype?: 'float32' | 'float16';
}

export const TINY_VIT_INPUT = 'pixel_values';
export const TINY_VIT_OUTPUT = 'embedding';
const OPSET = 13; // ReduceMean/ReduceL2 still take `axes` as an attribute in opset 13
const IR_VERSION = 7;

/** mulberry32: tiny, fast, and fully specified, so the same seed gives the same bits on every platform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Zero-mean uniform weights with the given standard deviation. Uniform (not Box-Muller) avoids
 * Math.log/Math.cos, whose last bits are not guaranteed identical across JS engines.
 */
function uniformTensor(rand: () => number, count: number, std: number): Float32Array {
  const half = std * Math.sqrt(3);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (rand() * 2 - 1) * half;
  return out;
}

/**
 * Patch-embedding Conv weights. Scientific figures are mostly ink on white paper, and a plain random
 * projection is dominated by the mean colour, so every white-background figure embedded alike. Hence:
 * - the first half of the output channels are plain random filters (they see colour);
 * - the second half have each 14x14 kernel made zero-mean and amplified: edge/texture detectors,
 *   blind to flat colour;
 * - the bias of each channel is minus the sum of its weights, so a pure white patch maps to 0
 *   (white is the origin; only the "ink" contributes to the pooled embedding).
 */
function patchEmbedding(
  rand: () => number,
  dim: number,
  fanIn: number,
  kernelArea: number,
): { weight: Float32Array; bias: Float32Array } {
  const weight = uniformTensor(rand, dim * fanIn, Math.sqrt(2 / fanIn));
  const bias = new Float32Array(dim);
  const structureGain = 3;
  for (let o = 0; o < dim; o++) {
    if (o >= dim / 2) {
      for (let k0 = o * fanIn; k0 < (o + 1) * fanIn; k0 += kernelArea) {
        let mean = 0;
        for (let k = k0; k < k0 + kernelArea; k++) mean += weight[k];
        mean /= kernelArea;
        for (let k = k0; k < k0 + kernelArea; k++) weight[k] = (weight[k] - mean) * structureGain;
      }
    }
    let sum = 0;
    for (let k = o * fanIn; k < (o + 1) * fanIn; k++) sum += weight[k]; // float32 values, summed in float64
    bias[o] = -sum;
  }
  return { weight, bias };
}

/** Build the model and return its serialised ONNX bytes. Same options -> byte-identical output. */
export function buildTinyVitModel(opts: TinyVitOptions = {}): Buffer {
  const seed = opts.seed ?? 1;
  const dim = opts.dim ?? 64;
  const patch = opts.patch ?? 14;
  const imageSize = opts.imageSize ?? 224;
  const dtype = opts.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new Error(`unsupported dtype ${String(opts.dtype)}`);
  for (const [k, v] of Object.entries({ dim, patch, imageSize })) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`tiny-vit: ${k} must be a positive integer, got ${v}`);
  }
  if (imageSize % patch !== 0) throw new Error(`tiny-vit: imageSize ${imageSize} is not a multiple of patch ${patch}`);

  const grid = imageSize / patch;
  const tokens = grid * grid;
  const hidden = 2 * dim;
  const fanIn = 3 * patch * patch;
  const rand = mulberry32(seed);

  // Weights are drawn in float32 whatever the dtype, so the fp16 model is the fp32 model rounded to half.
  const f32 = (name: string, dims: number[], data: Float32Array): OnnxTensor =>
    dtype === 'float16'
      ? { name, dims, dataType: 'float16', data: float32ToHalfArray(data) }
      : { name, dims, dataType: 'float32', data };
  const { weight, bias } = patchEmbedding(rand, dim, fanIn, patch * patch);
  // Small position embedding and biases, and a zero-centred activation (Tanh): a ReLU MLP added a
  // shared positive component that made all white-background figures embed alike (cosine > 0.99).
  const initializers: OnnxTensor[] = [
    f32('patch_embed.weight', [dim, 3, patch, patch], weight),
    f32('patch_embed.bias', [dim], bias),
    f32('pos_embed', [tokens, dim], uniformTensor(rand, tokens * dim, 0.01)),
    f32('mlp.fc1.weight', [dim, hidden], uniformTensor(rand, dim * hidden, Math.sqrt(1 / dim))),
    f32('mlp.fc1.bias', [hidden], uniformTensor(rand, hidden, 0.01)),
    f32('mlp.fc2.weight', [hidden, dim], uniformTensor(rand, hidden * dim, Math.sqrt(1 / hidden))),
    f32('mlp.fc2.bias', [dim], uniformTensor(rand, dim, 0.01)),
    { name: 'tokens_shape', dims: [3], dataType: 'int64', data: BigInt64Array.from([0n, BigInt(dim), -1n]) },
    // 1e-12 underflows to 0 in half; 1e-6 is a half subnormal.
    f32('norm_eps', [], Float32Array.of(dtype === 'float16' ? 1e-6 : 1e-12)),
  ];

  const node = (opType: string, inputs: string[], output: string, attributes?: OnnxNode['attributes']): OnnxNode => ({
    opType,
    inputs,
    outputs: [output],
    name: output,
    attributes,
  });
  const nodes: OnnxNode[] = [
    node('Conv', [TINY_VIT_INPUT, 'patch_embed.weight', 'patch_embed.bias'], 'patches', [
      { name: 'kernel_shape', type: 'ints', value: [patch, patch] },
      { name: 'strides', type: 'ints', value: [patch, patch] },
    ]),
    // Reshape shape [0, dim, -1]: 0 copies the (dynamic) batch dimension.
    node('Reshape', ['patches', 'tokens_shape'], 'patch_tokens'),
    node('Transpose', ['patch_tokens'], 'tokens', [{ name: 'perm', type: 'ints', value: [0, 2, 1] }]),
    node('Add', ['tokens', 'pos_embed'], 'x0'),
    node('MatMul', ['x0', 'mlp.fc1.weight'], 'h0'),
    node('Add', ['h0', 'mlp.fc1.bias'], 'h1'),
    node('Tanh', ['h1'], 'h2'),
    node('MatMul', ['h2', 'mlp.fc2.weight'], 'h3'),
    node('Add', ['h3', 'mlp.fc2.bias'], 'h4'),
    node('Add', ['x0', 'h4'], 'x1'),
    node('ReduceMean', ['x1'], 'pooled', [
      { name: 'axes', type: 'ints', value: [1] },
      { name: 'keepdims', type: 'int', value: 0 },
    ]),
    node('ReduceL2', ['pooled'], 'norm', [
      { name: 'axes', type: 'ints', value: [1] },
      { name: 'keepdims', type: 'int', value: 1 },
    ]),
    node('Max', ['norm', 'norm_eps'], 'safe_norm'), // guards the all-zero embedding against 0/0
    node('Div', ['pooled', 'safe_norm'], TINY_VIT_OUTPUT),
  ];

  const elem = dtype === 'float16' ? TensorDataType.FLOAT16 : TensorDataType.FLOAT;
  return encodeModel({
    irVersion: IR_VERSION,
    producerName: 'biomedica-release/tiny-vit',
    opsetImports: [{ domain: '', version: OPSET }],
    graph: {
      name: `tiny_vit_d${dim}_p${patch}_s${imageSize}_seed${seed}${dtype === 'float16' ? '_fp16' : ''}`,
      nodes,
      initializers,
      inputs: [{ name: TINY_VIT_INPUT, elemType: elem, shape: ['batch', 3, imageSize, imageSize] }],
      outputs: [{ name: TINY_VIT_OUTPUT, elemType: elem, shape: ['batch', dim] }],
    },
  });
}
