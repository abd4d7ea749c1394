/**
 * Figure image validation and normalisation for the `.jpg` shard member.
 *
 * The original pipeline re-encoded every image with Pillow at q75 (generational loss, and
 * bytes we cannot reproduce anyway: docs/dataset-format.md). We instead keep a decodable
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
import { decodeRgb, type DecodeConfig } from '../annotate/preprocess';

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
  /**
   * The embedding model's preprocessing: when given, the result carries `input`, what annotate's decodeRgb makes
   * of the published bytes with it, so annotate does not decode the JPEG again.
   */
  preprocess?: DecodeConfig;
}

export type NormalizeFailure = 'corrupt' | 'too-small' | 'too-large' | 'too-many-pixels' | 'unsupported-format';

export type NormalizedImage =
  | {
      ok: true;
      jpeg: Buffer;
      width: number;
      height: number;
      sourceFormat: string;
      passthrough: boolean;
      /** decodeRgb(jpeg, preprocess), when asked for and decodable (annotate decodes, and fails, as before if not). */
      input?: Buffer;
    }
  | { ok: false; reason: NormalizeFailure; detail: string; width?: number; height?: number };

export const DEFAULT_MAX_PIXELS = 178_956_970;
export const DEFAULT_MIN_SIDE = 21;
export const DEFAULT_JPEG_QUALITY = 90;

/** Formats PMC figures come in. SVG/PDF/HEIF are refused: rendering them is not our job. */
const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'gif', 'tiff', 'webp']);

/** The longest side a JPEG can have (its header holds 16-bit dimensions; libjpeg stops at 65,500). */
export const MAX_JPEG_SIDE = 65_500;

/**
 * What the first bytes say the file is: one of the raster formats we decode, or a name for what it is instead.
 * Sniffed before libvips sees the bytes, so an SVG, PDF or HTML page (however malformed) is `unsupported-format`,
 * and only a file that claims a supported format and fails to decode is `corrupt`.
 */
export function sniffFormat(b: Buffer): { supported: true } | { supported: false; what: string } {
  const starts = (...sig: number[]) => sig.every((x, i) => b[i] === x);
  if (starts(0xff, 0xd8, 0xff) || starts(0x89, 0x50, 0x4e, 0x47) || b.subarray(0, 4).toString('latin1') === 'GIF8')
    return { supported: true };
  if (
    starts(0x49, 0x49, 0x2a, 0x00) ||
    starts(0x4d, 0x4d, 0x00, 0x2a) ||
    starts(0x49, 0x49, 0x2b, 0x00) ||
    starts(0x4d, 0x4d, 0x00, 0x2b)
  )
    return { supported: true };
  if (b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP')
    return { supported: true };
  const head = b
    .subarray(0, 512)
    .toString('latin1')
    .replace(/^\ufeff|^\xef\xbb\xbf/, '')
    .trimStart()
    .toLowerCase();
  if (head.startsWith('%pdf')) return { supported: false, what: 'a PDF document' };
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!doctype svg|<svg)/.test(head) || /<svg[\s>]/.test(head))
    return { supported: false, what: 'an SVG (vector) image, which is not rendered' };
  if (/^(<!doctype html|<html)/.test(head)) return { supported: false, what: 'an HTML page' };
  if (head.startsWith('<')) return { supported: false, what: 'an XML or text document' };
  if (b.subarray(4, 12).toString('latin1').startsWith('ftyp'))
    return { supported: false, what: 'a HEIF/AVIF or MP4 file' };
  return { supported: false, what: `no image format we decode (first bytes ${b.subarray(0, 8).toString('hex')})` };
}

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
  if (!Number.isInteger(maxPixels) || maxPixels < 1)
    throw new RangeError(`maxPixels must be a positive integer, got ${maxPixels}`);
  if (!Number.isInteger(quality) || quality < 1 || quality > 100)
    throw new RangeError(`jpegQuality must be 1..100, got ${quality}`);
  if (bytes.length === 0) return { ok: false, reason: 'corrupt', detail: 'empty input' };
  const sniffed = sniffFormat(bytes);
  if (!sniffed.supported) return { ok: false, reason: 'unsupported-format', detail: `the file is ${sniffed.what}` };

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
    return {
      ok: false,
      reason: 'too-many-pixels',
      detail: `${width}x${height} exceeds ${maxPixels} pixels`,
      width,
      height,
    };
  }
  if (width > MAX_JPEG_SIDE || height > MAX_JPEG_SIDE) {
    return {
      ok: false,
      reason: 'too-large',
      detail: `${width}x${height}: a side over ${MAX_JPEG_SIDE} px cannot be a JPEG`,
      width,
      height,
    };
  }
  if (width < minSide || height < minSide) {
    return {
      ok: false,
      reason: 'too-small',
      detail: `${width}x${height} is below the ${minSide}px minimum side`,
      width,
      height,
    };
  }

  try {
    const pre = opts.preprocess;
    if (canPassThrough(meta)) {
      // Metadata only reads the header: decode the whole file to prove the bytes are whole. A squash resize to the
      // model's input needs every row, so libjpeg reads and entropy-decodes every scan of every MCU (its DCT
      // scaling only shortens the IDCT): that decode is the proof, and annotate's input, in one. A centre crop may
      // leave the last rows unread, and a file it cannot decode (sharp's own pixel limit) may still be whole: then
      // the proof below decides, as it does when no input is asked for.
      const decoded = pre ? await decodeRgb(bytes, pre).catch(() => undefined) : undefined;
      if (decoded && pre?.resize === 'squash')
        return { ok: true, jpeg: bytes, width, height, sourceFormat: format, passthrough: true, input: decoded };
      // The proof alone: shrink-on-load by 8 still entropy-decodes every scan, so truncation and decode errors
      // surface exactly as in a full decode, at a fraction of the time and 1/64 of the memory (sharp's stats()
      // cost 5-8x a decode; a full-size raw buffer of a large figure costs hundreds of MB).
      await sharp(bytes, input)
        .resize({
          width: Math.ceil(width / 8),
          height: Math.ceil(height / 8),
          fit: 'fill',
          fastShrinkOnLoad: true,
          kernel: 'nearest',
        })
        .raw()
        .toBuffer();
      return { ok: true, jpeg: bytes, width, height, sourceFormat: format, passthrough: true, input: decoded };
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
      return {
        ok: false,
        reason: 'unsupported-format',
        detail: `conversion produced ${info.channels} channels`,
        width,
        height,
      };
    }
    // Annotate's input comes from the published bytes, not the source's pixels, so it is exactly what annotate
    // would decode: a second decode here (of the converted JPEG), in place of annotate's.
    return {
      ok: true,
      jpeg: data,
      width: info.width,
      height: info.height,
      sourceFormat: format,
      passthrough: false,
      input: pre ? await decodeRgb(data, pre).catch(() => undefined) : undefined,
    };
  } catch (err) {
    return { ok: false, reason: classify(err), detail: shortenVipsMessage(err), width, height };
  }
}
