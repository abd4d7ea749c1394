/**
 * A small synthetic release laid out like a real one after the images stage (plan/units/<unit>.json,
 * units/<unit>/images.ndjson, images/<key>.jpg, articles.ndjson with captions), for the annotation and taxonomy
 * tests. Figures come in four visual families (bar charts, smooth "micrographs", tables, discs) with seeded jitter.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { sha256Hex } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import { mulberry32 } from '../activities/annotate/tiny-vit';
import { ReleaseInputSchema, type ReleaseInput, type ReleaseInputArgs } from '../config/release';

export const FAMILIES = ['bar chart', 'micrograph', 'table', 'discs'] as const;

export interface SyntheticFigure {
  key: string;
  article: string;
  family: number;
  caption: string;
}

/** One figure of a family as JPEG; `rand` adds the jitter. */
export async function familyImage(family: number, rand: () => number): Promise<Buffer> {
  const w = 96 + Math.floor(rand() * 64);
  const h = 72 + Math.floor(rand() * 48);
  const raw = Buffer.alloc(w * h * 3, 255);
  const put = (x: number, y: number, c: [number, number, number]) => raw.set(c, (y * w + x) * 3);
  const hue: [number, number, number] = [Math.floor(rand() * 200), Math.floor(rand() * 200), Math.floor(rand() * 200)];
  if (family === 0) {
    const bars = 4 + Math.floor(rand() * 5);
    for (let b = 0; b < bars; b++) {
      const top = Math.floor(h * (0.1 + 0.8 * rand()));
      const x0 = Math.floor(((b + 0.2) * w) / bars);
      const x1 = Math.floor(((b + 0.8) * w) / bars);
      for (let y = top; y < h - 4; y++) for (let x = x0; x < x1; x++) put(x, y, hue);
    }
    for (let x = 0; x < w; x++) put(x, h - 4, [0, 0, 0]);
  } else if (family === 1) {
    const fx = 0.05 + rand() * 0.1;
    const fy = 0.05 + rand() * 0.1;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const v = Math.sin(x * fx) * Math.cos(y * fy);
        put(x, y, [Math.floor(120 + 100 * v), Math.floor(60 + 50 * v), Math.floor(140 - 100 * v)]);
      }
  } else if (family === 2) {
    const step = 8 + Math.floor(rand() * 6);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) if (y % step === 0 || x % (step * 3) === 0) put(x, y, [0, 0, 0]);
  } else {
    const discs = 2 + Math.floor(rand() * 3);
    for (let d = 0; d < discs; d++) {
      const cx = rand() * w;
      const cy = rand() * h;
      const r = 8 + rand() * 14;
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) put(x, y, hue);
    }
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

export interface SyntheticRelease {
  release: ReleaseInput;
  layout: ReleaseLayout;
  units: string[];
  figures: Map<string, SyntheticFigure & { unit: string }>;
}

/**
 * Writes `units` units of `figuresPerUnit` figures (families in turn) under dataDir/releases/<releaseId>.
 * `corrupt` lists figure keys whose staged file is not an image.
 */
export async function buildSyntheticRelease(opts: {
  dataDir: string;
  releaseId?: string;
  units?: number;
  figuresPerUnit?: number;
  seed?: number;
  corrupt?: string[];
  annotate?: ReleaseInputArgs['annotate'];
}): Promise<SyntheticRelease> {
  const release = ReleaseInputSchema.parse({
    releaseId: opts.releaseId ?? 'synthetic',
    dataDir: opts.dataDir,
    source: { kind: 'pmc-cloud-dir', root: opts.dataDir },
    ...(opts.annotate ? { annotate: opts.annotate } : {}),
  });
  const layout = new ReleaseLayout(opts.dataDir, release.releaseId);
  const rand = mulberry32(opts.seed ?? 11);
  const units: string[] = [];
  const figures = new Map<string, SyntheticFigure & { unit: string }>();
  const perUnit = opts.figuresPerUnit ?? 12;
  let pmc = 1000;
  for (let u = 0; u < (opts.units ?? 2); u++) {
    const unitId = `commercial-${String(u).padStart(6, '0')}`;
    units.push(unitId);
    const unitDir = layout.unitDir(unitId);
    fs.mkdirSync(path.join(unitDir, 'images'), { recursive: true });
    const prepared: object[] = [];
    const lines: object[] = [];
    const planned: object[] = [];
    for (let i = 0; i < perUnit; i += 2) {
      // Two figures per article.
      const pmcid = `PMC${pmc++}`;
      const article = `${pmcid}.1`;
      planned.push({ pmcid, version: 1, pmid: null });
      const figs: object[] = [];
      for (let j = 0; j < 2 && i + j < perUnit; j++) {
        const n = u * perUnit + i + j;
        const family = n % FAMILIES.length;
        const key = `${pmcid}_1_${j}`;
        const caption = `Figure ${j + 1}. A ${FAMILIES[family]} <synthetic> & seeded (#${n}).`;
        const image = await familyImage(family, rand); // drawn even when replaced, so the other figures stay the same
        const jpeg = opts.corrupt?.includes(key) ? Buffer.from('this is not a JPEG') : image;
        fs.writeFileSync(path.join(unitDir, 'images', `${key}.jpg`), jpeg);
        prepared.push({
          key,
          article,
          width: 0,
          height: 0,
          bytes: jpeg.length,
          sha256: sha256Hex(jpeg),
          sourceFormat: 'jpeg',
          passthrough: true,
        });
        figs.push({
          key,
          index: j,
          href: `f${j}`,
          mediaFile: null,
          mediaKey: null,
          mediaMd5: null,
          caption,
          rejected: null,
        });
        figures.set(key, { key, article, family, caption, unit: unitId });
      }
      lines.push({ article, planned: { pmcid, version: 1, pmid: null }, record: {}, figures: figs });
    }
    fs.writeFileSync(path.join(unitDir, 'images.ndjson'), prepared.map((p) => JSON.stringify(p)).join('\n') + '\n');
    fs.writeFileSync(path.join(unitDir, 'articles.ndjson'), lines.map((p) => JSON.stringify(p)).join('\n') + '\n');
    fs.mkdirSync(path.dirname(layout.unitFile(unitId)), { recursive: true });
    fs.writeFileSync(
      layout.unitFile(unitId),
      JSON.stringify({ unitId, subset: 'commercial', index: u, articles: planned }),
    );
  }
  return { release, layout, units, figures };
}
