/**
 * The embedding model's inputs of a unit's figures, made by the images stage during its one decode of each figure
 * (normalize.ts) so that annotate, on the gpu pool, does not decode the JPEGs again: decodeRgb's output (HWC uint8
 * RGB, size x size: 150,528 bytes at 224) for each published figure, in `inputs.bin`, with `inputs.json` naming the
 * preprocessing it was made with and where each figure's record lies.
 *
 * Each record is raw deflate (zlib level 1) of the pixels, one after another: on the real PMC figures a record is
 * 24-96 KB (a third of the raw bytes, and of the JPEG's), deflating costs about 1 ms of the cpu pool per figure and
 * inflating 0.2-0.6 ms of the gpu host's (decoding the JPEG cost it 4-6 ms). One file per unit, not per figure: one
 * object in the store for up to 10,000 figures, read by offset (annotate resumes mid-unit).
 */
import { writeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import type { ReleaseInput } from '../../config/release';
import {
  decodeConfigOf,
  parsePreprocessConfig,
  preprocessSidecarPath,
  sameDecode,
  type DecodeConfig,
} from '../annotate/preprocess';
import { readJsonIfExists, writeJsonAtomic } from '../common/files';
import { pullDataFile } from '../common/sync';
import { threadSink } from '../common/threads';

const inflateRaw = promisify(zlib.inflateRaw);

export interface ModelInputsMeta {
  format: 'rgb8-hwc-deflate';
  preprocess: DecodeConfig;
  /** In images.ndjson's order; a published figure without a record is decoded by annotate as before. */
  figures: { key: string; offset: number; bytes: number }[];
}

export function modelInputPaths(unitDir: string): { file: string; meta: string } {
  return { file: path.join(unitDir, 'inputs.bin'), meta: path.join(unitDir, 'inputs.json') };
}

/**
 * The preprocessing the release's model takes, as annotate's embedder will find it: the model's sidecar
 * (`<model>.preprocess.json`) when there is one, else the default. (A model with a static input size other than the
 * default's, and no sidecar, takes its own size: annotate then sees a different config and decodes as before.)
 */
export async function releaseDecodeConfig(release: ReleaseInput): Promise<DecodeConfig> {
  const sidecar = await pullDataFile(release, preprocessSidecarPath(release.annotate.modelPath));
  const cfg = sidecar ? JSON.parse(await fs.readFile(sidecar, 'utf8')) : {};
  return decodeConfigOf(parsePreprocessConfig(cfg, sidecar ?? 'preprocess config'));
}

/** Writes a unit's inputs.bin (through a partial name) and, once it is whole, inputs.json. */
export class ModelInputsWriter {
  private readonly meta: ModelInputsMeta;
  private fh: fs.FileHandle | null = null;
  private offset = 0;

  constructor(
    private readonly unitDir: string,
    preprocess: DecodeConfig,
  ) {
    this.meta = { format: 'rgb8-hwc-deflate', preprocess, figures: [] };
  }

  private get partial(): string {
    return `${modelInputPaths(this.unitDir).file}.partial`;
  }

  async add(key: string, rgb: Buffer): Promise<void> {
    this.fh ??= await fs.open(this.partial, 'w');
    // Deflated on this thread: a millisecond of work, cheaper here than a hop to libuv's threads and back.
    const record = zlib.deflateRawSync(rgb, { level: 1 });
    // A write may take less than it was given (rare on a regular file): the rest follows until the record is whole.
    for (let done = 0; done < record.length;) {
      const at = this.offset + done;
      const wrote = threadSink()
        ? writeSync(this.fh.fd, record, done, record.length - done, at)
        : (await this.fh.write(record, done, record.length - done, at)).bytesWritten;
      if (wrote <= 0) throw new Error(`write to ${this.partial} made no progress`);
      done += wrote;
    }
    this.meta.figures.push({ key, offset: this.offset, bytes: record.length });
    this.offset += record.length;
  }

  /** Closes the file and writes the meta; returns both paths (the stage's outputs). */
  async finish(): Promise<string[]> {
    const { file, meta } = modelInputPaths(this.unitDir);
    if (!this.fh) this.fh = await fs.open(this.partial, 'w');
    await this.fh.close();
    await fs.rename(this.partial, file);
    await writeJsonAtomic(meta, this.meta);
    return [file, meta];
  }
}

/** A unit's model inputs, when the images stage made them with `want`; null otherwise (annotate decodes). */
export async function openModelInputs(
  unitDir: string,
  want: DecodeConfig,
): Promise<{ get(key: string): Promise<Buffer | null>; close(): Promise<void> } | null> {
  const paths = modelInputPaths(unitDir);
  const meta = await readJsonIfExists<ModelInputsMeta>(paths.meta);
  if (!meta || meta.format !== 'rgb8-hwc-deflate') return null;
  if (!sameDecode(meta.preprocess, want)) return null;
  const fh = await fs.open(paths.file, 'r').catch(() => null);
  if (!fh) return null;
  const at = new Map(meta.figures.map((f) => [f.key, f]));
  return {
    async get(key) {
      const f = at.get(key);
      if (!f) return null;
      const record = Buffer.alloc(f.bytes);
      const { bytesRead } = await fh.read(record, 0, f.bytes, f.offset);
      if (bytesRead !== f.bytes) throw new Error(`inputs.bin: record of ${key} is cut short`);
      return inflateRaw(record);
    },
    close: () => fh.close(),
  };
}
