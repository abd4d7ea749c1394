/**
 * How an image becomes the embedding model's input (HWC uint8 RGB, size x size), apart from onnxruntime so that the
 * cpu pool's images stage can make that input during its one decode (activities/images/normalize.ts) without
 * loading the model's runtime; the embedder (embedder.ts) turns it into the tensor.
 */
import * as fs from 'node:fs/promises';
import sharp from 'sharp';
import { z } from 'zod';

export const DEFAULT_IMAGE_SIZE = 224;

const rgb = z.tuple([z.number(), z.number(), z.number()]);

/**
 * How an image becomes the model's input. Defaults are the original labeller's (torchvision
 * `Resize((224,224))` + `ToTensor()`, no normalisation).
 */
export const PreprocessConfigSchema = z.object({
  /** Square output side in pixels; must match a model with a static input size. */
  size: z.number().int().positive().default(DEFAULT_IMAGE_SIZE),
  /** 'squash': resize both sides to `size` (the original). 'center-crop': scale the shorter side to `size`, crop the centre. */
  resize: z.enum(['squash', 'center-crop']).default('squash'),
  /** libvips kernel; 'linear' (with libvips' antialiasing shrink) is the closest to PIL/torchvision bilinear+antialias. */
  kernel: z.enum(['nearest', 'linear', 'cubic', 'mitchell', 'lanczos2', 'lanczos3']).default('linear'),
  /** Per-channel (x - mean) / std after scaling to [0,1]; null = none (the original). */
  mean: rgb.nullable().default(null),
  std: rgb
    .refine((s) => s.every((v) => v > 0), 'std must be positive')
    .nullable()
    .default(null),
  /** Transparency is flattened onto this colour (0-255 RGB). */
  background: z
    .tuple([z.number().int().min(0).max(255), z.number().int().min(0).max(255), z.number().int().min(0).max(255)])
    .default([255, 255, 255]),
});
export type PreprocessConfig = z.infer<typeof PreprocessConfigSchema>;
export type PreprocessConfigInput = z.input<typeof PreprocessConfigSchema>;

export function parsePreprocessConfig(value: unknown, where = 'preprocess config'): PreprocessConfig {
  const parsed = PreprocessConfigSchema.strict().safeParse(value ?? {});
  if (!parsed.success) throw new Error(`invalid ${where}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The sidecar that configures preprocessing for one model file: `x.onnx` -> `x.preprocess.json`. */
export function preprocessSidecarPath(modelPath: string): string {
  return modelPath.replace(/\.onnx$/i, '') + '.preprocess.json';
}

export async function loadPreprocessSidecar(modelPath: string): Promise<PreprocessConfig | null> {
  const file = preprocessSidecarPath(modelPath);
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  return text === null ? null : parsePreprocessConfig(JSON.parse(text), file);
}

/** Decode + resize on a libuv thread (sharp): HWC uint8 RGB of size x size. The returned promise settles on the JS thread. */
export async function decodeRgb(bytes: Buffer, cfg: DecodeConfig): Promise<Buffer> {
  if (bytes.length === 0) throw new Error('empty image file');
  const [r, g, b] = cfg.background;
  const { data, info } = await sharp(bytes, { failOn: 'error', animated: false })
    .flatten({ background: { r, g, b } })
    .toColourspace('srgb')
    .resize(
      cfg.size,
      cfg.size,
      cfg.resize === 'squash'
        ? { fit: 'fill', kernel: cfg.kernel }
        : { fit: 'cover', position: 'centre', kernel: cfg.kernel },
    )
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== cfg.size || info.height !== cfg.size) {
    throw new Error(`preprocess: expected ${cfg.size}x${cfg.size}, sharp produced ${info.width}x${info.height}`);
  }
  if (info.channels === 3) return data;
  if (info.channels !== 1) throw new Error(`preprocess: unexpected ${info.channels} channels`);
  // A single band (grey) is replicated into R, G and B.
  const out = Buffer.alloc(data.length * 3);
  for (let p = 0; p < data.length; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = data[p]!;
  return out;
}

/** What decodeRgb's output depends on (mean and std apply later, to the tensor). */
export type DecodeConfig = Pick<PreprocessConfig, 'size' | 'resize' | 'kernel' | 'background'>;

export function decodeConfigOf(cfg: DecodeConfig): DecodeConfig {
  return { size: cfg.size, resize: cfg.resize, kernel: cfg.kernel, background: cfg.background };
}

/** Whether decodeRgb with `a` gives the same bytes as with `b`. */
export function sameDecode(a: DecodeConfig, b: DecodeConfig): boolean {
  return JSON.stringify(decodeConfigOf(a)) === JSON.stringify(decodeConfigOf(b));
}

/** An image already decoded to the model's input (decodeRgb's output), which the embedder takes as it is. */
export class DecodedRgb {
  constructor(readonly rgb: Buffer) {}
}
