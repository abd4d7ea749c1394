/**
 * A unit's embeddings on disk, written by annotateUnit and sampled by the taxonomy fit.
 *
 *   units/<unit>/embeddings.f32     rows of `dim` little-endian float32, one per line of images.ndjson, in order;
 *                                   an image that failed has a row of NaN
 *   units/<unit>/embeddings.json    UnitEmbeddingsMeta: dim, rows, model sha256, images.ndjson sha256, failures
 *
 * While the activity runs it appends to embeddings.partial.f32 (and embeddings.partial-failed.ndjson) and
 * heartbeats `AnnotateProgress` after each batch; a retried attempt reads its heartbeat details and continues from
 * `done` (the partial file is cut back to exactly that many rows). About 4 KiB per image for DINOv2's 1024-d: small
 * next to the staged JPEG it describes.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';

export const EMBEDDINGS_FILE = 'embeddings.f32';
export const EMBEDDINGS_META = 'embeddings.json';
export const EMBEDDINGS_PARTIAL = 'embeddings.partial.f32';
export const FAILED_PARTIAL = 'embeddings.partial-failed.ndjson';

export const EmbeddingFailureSchema = z.object({
  index: z.number().int().nonnegative(),
  key: z.string(),
  article: z.string(),
  detail: z.string(),
});
export type EmbeddingFailure = z.infer<typeof EmbeddingFailureSchema>;

/** What must match for stored or partial embeddings to be reused: same model, same images, same width. */
export const EmbeddingIdentitySchema = z.object({
  dim: z.number().int().positive(),
  rows: z.number().int().nonnegative(),
  modelSha256: z.string(),
  imagesSha256: z.string(),
});
export type EmbeddingIdentity = z.infer<typeof EmbeddingIdentitySchema>;

export const UnitEmbeddingsMetaSchema = EmbeddingIdentitySchema.extend({
  format: z.literal('f32le-rows'),
  provider: z.string(),
  inputType: z.enum(['float32', 'float16']),
  failed: z.array(EmbeddingFailureSchema),
});
export type UnitEmbeddingsMeta = z.infer<typeof UnitEmbeddingsMetaSchema>;

/** annotateUnit's heartbeat details: the identity of the work and how many images (in order) are on disk. */
export const AnnotateProgressSchema = EmbeddingIdentitySchema.extend({
  kind: z.literal('annotate-progress'),
  done: z.number().int().nonnegative(),
  provider: z.string(),
});
export type AnnotateProgress = z.infer<typeof AnnotateProgressSchema>;

export function sameIdentity(a: EmbeddingIdentity, b: EmbeddingIdentity): boolean {
  return a.dim === b.dim && a.rows === b.rows && a.modelSha256 === b.modelSha256 && a.imagesSha256 === b.imagesSha256;
}

/** Heartbeat details -> progress, or null when absent, of another shape, or for other work (model or images changed). */
export function resumableProgress(details: unknown, identity: EmbeddingIdentity): AnnotateProgress | null {
  const parsed = AnnotateProgressSchema.safeParse(details);
  if (!parsed.success || !sameIdentity(parsed.data, identity) || parsed.data.done > identity.rows) return null;
  return parsed.data;
}

export function unitEmbeddingPaths(unitDir: string) {
  return {
    file: path.join(unitDir, EMBEDDINGS_FILE),
    meta: path.join(unitDir, EMBEDDINGS_META),
    partial: path.join(unitDir, EMBEDDINGS_PARTIAL),
    failedPartial: path.join(unitDir, FAILED_PARTIAL),
  };
}

export async function readUnitEmbeddingsMeta(unitDir: string): Promise<UnitEmbeddingsMeta | null> {
  const text = await fs.readFile(unitEmbeddingPaths(unitDir).meta, 'utf8').catch(() => null);
  if (text === null) return null;
  const parsed = UnitEmbeddingsMetaSchema.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : null;
}

/** Rows as bytes (little-endian float32, whatever the host order). */
export function rowsToBytes(rows: Float32Array): Buffer {
  const buf = Buffer.alloc(rows.length * 4);
  for (let i = 0; i < rows.length; i++) buf.writeFloatLE(rows[i]!, i * 4);
  return buf;
}

export function bytesToRows(buf: Buffer): Float32Array {
  const out = new Float32Array(buf.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** Selected rows of an embeddings file, by row index, in the order given. */
export async function readRows(file: string, dim: number, indices: readonly number[]): Promise<Float32Array> {
  const out = new Float32Array(indices.length * dim);
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(dim * 4);
    for (const [i, row] of indices.entries()) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, row * dim * 4);
      if (bytesRead !== buf.length) throw new Error(`${file}: row ${row} is beyond the end`);
      out.set(bytesToRows(buf), i * dim);
    }
  } finally {
    await fh.close();
  }
  return out;
}
