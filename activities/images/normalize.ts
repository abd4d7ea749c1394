/**
 * Figure image validation and normalisation for the `.jpg` shard member.
 *
 * The original pipeline re-encoded every image with Pillow at q75 (generational loss, and
 * bytes we cannot reproduce anyway: biomedica-etl.md §9.5, §11). We instead keep a decodable
 * 8-bit greyscale/sRGB JPEG byte-for-byte, and convert everything else once to a standard
 * baseline JPEG (sRGB, 3 channels, 4:2:0, alpha flattened onto white, metadata stripped).
 * Conversion is deterministic: the same input bytes give the same output bytes.
 *
 * Dimensions are the stored ones (EXIF orientation is not applied), as PIL's `Image.size`
 * reports them for the published `image_size` and the > 20 px filter.
 *
 * Pass-through covers baseline and progressive JPEGs alike (both are what readers decode; re-encoding a
 * progressive file would only lose quality), after the whole file has been entropy-decoded once to prove
 * it whole: a truncated or corrupt file is refused (quarantined), never published.
 */
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';

export interface NormalizeOptions {
  /**
   * Largest accepted width*height, checked from the header before any pixel is decoded (a decompression bomb
   * costs nothing); default 178,956,970, Pillow's DecompressionBombError threshold (2 x MAX_IMAGE_PIXELS),
   * the same as the release's images.maxPixels default.
   */
  maxPixels?: number;
  /** Smallest accepted side; default 21 because the published filter keeps width and height > 20. */
  minSide?: number;
  /** Quality for converted images; default 90 (one lossy step, so keep it high). */
  jpegQuality?: number;
}

export type NormalizeFailure = 'corrupt' | 'too-small' | 'too-many-pixels' | 'unsupported-format';

export type NormalizedImage =
  | { ok: true; jpeg: Buffer; width: number; height: number; sourceFormat: string; passthrough: boolean }
  | { ok: false; reason: NormalizeFailure; detail: string; width?: number; height?: number };

export const DEFAULT_MAX_PIXELS = 178_956_970;
export const DEFAULT_MIN_SIDE = 21;
export const DEFAULT_JPEG_QUALITY = 90;

/** Formats PMC figures come in. SVG/PDF/HEIF are refused: rendering them is not our job. */
const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'gif', 'tiff', 'webp']);

/** JPEGs that can be published unchanged: 8-bit, greyscale or (YCbCr-coded) sRGB, no alpha. */
function canPassThrough(meta: Metadata): boolean {
  return (
    meta.format === 'jpeg' &&
    meta.depth === 'uchar' &&
    ((meta.channels === 3 && meta.space === 'srgb') || (meta.channels === 1 && meta.space === 'b-w')) &&
    !meta.hasAlpha
  );
}

/** libvips messages are multi-line and can quote whole paths; keep the first useful bit. */
export function shortenVipsMessage(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  const line = raw
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .join('; ');
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

function classify(err: unknown): NormalizeFailure {
  const msg = err instanceof Error ? err.message : String(err);
  if (/unsupported image format/i.test(msg)) return 'unsupported-format';
  if (/pixel limit/i.test(msg)) return 'too-many-pixels';
  return 'corrupt';
}

export async function normalizeFigureImage(bytes: Buffer, opts: NormalizeOptions = {}): Promise<NormalizedImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const minSide = opts.minSide ?? DEFAULT_MIN_SIDE;
  const quality = opts.jpegQuality ?? DEFAULT_JPEG_QUALITY;
  if (!Number.isInteger(maxPixels) || maxPixels < 1) throw new RangeError(`maxPixels must be a positive integer, got ${maxPixels}`);
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new RangeError(`jpegQuality must be 1..100, got ${quality}`);
  if (bytes.length === 0) return { ok: false, reason: 'corrupt', detail: 'empty input' };

  // 'error' aborts on decode errors and truncation (libvips maps a premature EOF to 'truncated')
  // but tolerates libjpeg warnings such as extraneous bytes, which many real PMC JPEGs have.
  // page 0 / pages 1: the first frame of a GIF or the first page of a TIFF.
  const input: SharpOptions = { failOn: 'error', limitInputPixels: maxPixels, page: 0, pages: 1 };

  let meta: Metadata;
  try {
    // Header-only read; the pixel limit is applied below so the failure can report dimensions.
    meta = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
  } catch (err) {
    return { ok: false, reason: classify(err), detail: shortenVipsMessage(err) };
  }
  const format = meta.format ?? 'unknown';
  const width = meta.width;
  const height = meta.pageHeight ?? meta.height;
  if (!SUPPORTED_FORMATS.has(format)) {
    return { ok: false, reason: 'unsupported-format', detail: `unsupported image format: ${format}`, width, height };
  }
  if (!width || !height) return { ok: false, reason: 'corrupt', detail: 'image has no dimensions' };
  // Checked before decoding so a decompression bomb costs nothing.
  if (width * height > maxPixels) {
    return { ok: false, reason: 'too-many-pixels', detail: `${width}x${height} exceeds ${maxPixels} pixels`, width, height };
  }
  if (width < minSide || height < minSide) {
    return { ok: false, reason: 'too-small', detail: `${width}x${height} is below the ${minSide}px minimum side`, width, height };
  }

  try {
    if (canPassThrough(meta)) {
      // Metadata only reads the header: decode the whole file to prove the bytes are whole. libjpeg's DCT
      // scaling (shrink-on-load by 8) still reads and entropy-decodes every scan of every MCU, so truncation
      // and decode errors surface exactly as in a full decode, at a fraction of the time and 1/64 of the
      // memory (sharp's stats() cost 5-8x a decode; a full-size raw buffer of a large figure costs hundreds of MB).
      await sharp(bytes, input)
        .resize({ width: Math.ceil(width / 8), height: Math.ceil(height / 8), fit: 'fill', fastShrinkOnLoad: true, kernel: 'nearest' })
        .raw()
        .toBuffer();
      return { ok: true, jpeg: bytes, width, height, sourceFormat: format, passthrough: true };
    }
    const { data, info } = await sharp(bytes, input)
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .jpeg({
        quality,
        chromaSubsampling: '4:2:0',
        mozjpeg: false,
        progressive: false,
        trellisQuantisation: false,
        overshootDeringing: false,
        optimiseScans: false,
        optimiseCoding: true,
        force: true,
      })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      return { ok: false, reason: 'unsupported-format', detail: `conversion produced ${info.channels} channels`, width, height };
    }
    return { ok: true, jpeg: data, width: info.width, height: info.height, sourceFormat: format, passthrough: false };
  } catch (err) {
    return { ok: false, reason: classify(err), detail: shortenVipsMessage(err), width, height };
  }
}
