import * as path from 'node:path';

/**
 * Image extensions a JATS graphic href may resolve to, in order of preference. PMC hrefs usually
 * carry no extension ("gr1_lrg"), and packages ship a .gif thumbnail beside the full image, so gif
 * comes last.
 */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.tif', '.tiff', '.gif'] as const;

const rank = (ext: string): number => IMAGE_EXTENSIONS.indexOf(ext.toLowerCase() as (typeof IMAGE_EXTENSIONS)[number]);

/** The name without a trailing image extension ("a.b.jpg" → "a.b", "gr1_lrg" stays). */
function stemOf(name: string): string {
  const ext = path.posix.extname(name);
  return rank(ext) >= 0 ? name.slice(0, -ext.length) : name;
}

/**
 * The media file a graphic href refers to: an exact name match first, then the same stem with an
 * image extension in any case (jpg > jpeg > png > tif > tiff > gif). Hrefs may carry a directory or
 * an extension whose case differs from the file's. null when nothing matches.
 */
export function resolveMediaFile(href: string, fileNames: readonly string[]): string | null {
  const wanted = path.posix.basename(href.trim().replace(/\\/g, '/'));
  if (!wanted) return null;
  if (fileNames.includes(wanted)) return wanted;
  const stem = stemOf(wanted);
  const ownExt = path.posix.extname(wanted).toLowerCase();
  let best: string | null = null;
  let bestScore = Infinity;
  for (const name of fileNames) {
    const ext = path.posix.extname(name);
    const r = rank(ext);
    if (r < 0) continue;
    const candidateStem = name.slice(0, -ext.length);
    if (candidateStem.toLowerCase() !== stem.toLowerCase()) continue;
    // Same-case stem first; then the href's own extension (in any case); then the generic order.
    const score = (candidateStem === stem ? 0 : 100) + (ext.toLowerCase() === ownExt ? -1 : r);
    if (score < bestScore) {
      best = name;
      bestScore = score;
    }
  }
  return best;
}

/** A <graphic> inside <alternatives>, with the attributes that tell a thumbnail apart. */
export interface GraphicCandidate {
  href: string;
  attrs: Record<string, string>;
}

function isThumbnail(g: GraphicCandidate): boolean {
  const type = (g.attrs['content-type'] ?? '').toLowerCase();
  const use = (g.attrs['specific-use'] ?? '').toLowerCase();
  return type === 'thumb' || type === 'thumbnail' || use === 'thumb' || use === 'thumbnail';
}

/** From an <alternatives> group: not a thumbnail, and not a .gif when something else exists. */
export function chooseFigureGraphic<T extends GraphicCandidate>(candidates: readonly T[]): T | undefined {
  const full = candidates.filter((g) => !isThumbnail(g));
  const pool = full.length > 0 ? full : candidates;
  return pool.find((g) => !/\.gif$/i.test(g.href)) ?? pool[0];
}
