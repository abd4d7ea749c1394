import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { parseJats } from '../activities/parse/jats';
import { syntheticArticles } from './synthetic-articles';

/**
 * Builds a sample mirror laid out exactly like PMC's cloud bucket (docs/sources.md)
 * from a folder of real PMC article XML: `PMC<id>.<ver>/` with the XML, the metadata JSON (md5 in URLs),
 * a derived .txt and the media files named as the article's graphic hrefs; `metadata/`; and an S3 inventory
 * (manifest.json + csv.gz). Real images are used where a folder of them exists for the article; elsewhere
 * deterministic images are generated with sharp in a mix of jpg, png, gif and tif.
 */
export interface BuildMirrorOptions {
  nxmlDir: string;
  imagesDir?: string;
  outDir: string;
  /** The inventory's snapshot date; also every object's LastModified. */
  snapshot?: string;
  /** Deliberate publisher-side faults for tests: corrupt image bytes, media listed but absent. */
  faults?: { corruptImages?: number; missingImages?: number };
  /** Add the project's own articles (sample/synthetic-articles.ts) after the folder's: the demo sample does. */
  synthetic?: boolean;
}

export interface BuiltMirror {
  outDir: string;
  articles: number;
  mediaFiles: number;
  generatedImages: number;
  realImages: number;
  inventoryManifestKey: string;
  faults: { corrupt: string[]; missing: string[] };
}

const BUCKET = 'pmc-oa-opendata';
const IMAGE_EXT = /\.(jpe?g|png|gif|tiff?)$/i;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function seedBytes(...parts: string[]): Buffer {
  return createHash('sha256').update(parts.join('\u0000')).digest();
}

async function writeIfChanged(file: string, data: Buffer | string): Promise<void> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    const old = await fs.readFile(file);
    if (old.equals(buf)) return;
  } catch {
    /* absent */
  }
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, buf);
  await fs.rename(tmp, file);
}

/** Every graphic and inline-graphic href in document order, deduplicated. */
export function graphicHrefs(xml: string): string[] {
  const out: string[] = [];
  for (const m of xml.matchAll(/<(?:inline-)?graphic\b[^>]*?xlink:href\s*=\s*("([^"]*)"|'([^']*)')/g)) {
    const href = (m[2] ?? m[3] ?? '').trim();
    if (href && !out.includes(href)) out.push(href);
  }
  return out;
}

/** A deterministic synthetic figure: coloured panels and marks, different for every (article, href). */
export async function syntheticImage(pmcid: string, href: string, ext: string): Promise<Buffer> {
  const s = seedBytes(pmcid, href);
  const width = 160 + (s.readUInt16BE(0) % 640);
  const height = 120 + (s.readUInt16BE(2) % 480);
  const colour = (i: number) => `rgb(${s[i % 32]},${s[(i + 1) % 32]},${s[(i + 2) % 32]})`;
  const shapes: string[] = [];
  for (let i = 0; i < 6; i++) {
    const x = (s[4 + i]! / 255) * width * 0.8;
    const y = (s[10 + i]! / 255) * height * 0.8;
    const w = 10 + (s[16 + i]! / 255) * width * 0.4;
    const h = 10 + (s[22 + i]! / 255) * height * 0.4;
    shapes.push(
      i % 2
        ? `<circle cx="${x + w / 2}" cy="${y + h / 2}" r="${Math.min(w, h) / 2}" fill="${colour(i * 3)}"/>`
        : `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="${colour(i * 5)}"/>`,
    );
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${colour(28)}"/>${shapes.join('')}<line x1="0" y1="${height - 8}" x2="${width}" y2="8" stroke="black" stroke-width="3"/></svg>`;
  const img = sharp(Buffer.from(svg));
  switch (ext) {
    case 'png':
      return img.png({ compressionLevel: 9 }).toBuffer();
    case 'gif':
      return img.gif().toBuffer();
    case 'tif':
    case 'tiff':
      return img.tiff({ compression: 'lzw' }).toBuffer();
    default:
      return img.jpeg({ quality: 85 }).toBuffer();
  }
}

function pickExtension(pmcid: string, href: string): string {
  const r = seedBytes('ext', pmcid, href)[0]! / 256;
  return r < 0.6 ? 'jpg' : r < 0.8 ? 'png' : r < 0.9 ? 'gif' : 'tif';
}

function citationOf(xml: string, journal: string | null, pubDate: string | null, doi: string | null): string {
  // Only the article's own <article-meta>: the reference list below it has volumes, issues and pages of other papers.
  const front = xml.split('</article-meta>')[0]!;
  const tag = (name: string) => new RegExp(`<${name}[^>]*>([^<]*)</${name}>`).exec(front)?.[1]?.trim();
  const [y, m, d] = (pubDate ?? '').split('-');
  const date = [y, m ? MONTHS[Number(m) - 1] : undefined, d ? String(Number(d)) : undefined].filter(Boolean).join(' ');
  const vol = tag('volume');
  const issue = tag('issue');
  const pages = tag('fpage') ? `${tag('fpage')}${tag('lpage') ? `-${tag('lpage')}` : ''}` : tag('elocation-id');
  let c = `${journal ?? 'Unknown journal'}. ${date}`;
  if (vol) c += `;${vol}${issue ? `(${issue})` : ''}${pages ? `:${pages}` : ''}`;
  c += '.';
  if (doi) c += ` doi: ${doi}`;
  return c;
}

/** One row of the S3 inventory CSV (`Bucket, Key, LastModifiedDate, ETag`), for an object with these bytes. */
export function inventoryRow(key: string, body: Buffer | string, lastModified: string): string {
  return `"${BUCKET}","${key}","${lastModified}","${createHash('md5').update(body).digest('hex')}"`;
}

/**
 * Writes an S3 Inventory of `rows` dated `snapshot` under `inventory-reports/`: manifest.json pointing at one
 * gzipped CSV data file (no header row; column order given by fileSchema). Returns the manifest's key.
 */
export async function writeInventory(outDir: string, rows: readonly string[], snapshot: string): Promise<string> {
  const csvGz = gzipSync(Buffer.from(rows.join('\n') + '\n'), { level: 9 });
  const uuid = createHash('sha256')
    .update(csvGz)
    .digest('hex')
    .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*$/, '$1-$2-$3-$4-$5');
  const invBase = `inventory-reports/${BUCKET}/metadata`;
  const dataKey = `${invBase}/data/${uuid}.csv.gz`;
  await writeIfChanged(path.join(outDir, dataKey), csvGz);
  const manifest = {
    sourceBucket: BUCKET,
    destinationBucket: `arn:aws:s3:::${BUCKET}`,
    version: '2016-11-30',
    creationTimestamp: String(Date.parse(`${snapshot}T01:00:00Z`)),
    fileFormat: 'CSV',
    fileSchema: 'Bucket, Key, LastModifiedDate, ETag',
    files: [{ key: dataKey, size: csvGz.length, MD5checksum: createHash('md5').update(csvGz).digest('hex') }],
  };
  const manifestKey = `${invBase}/${snapshot}T01-00Z/manifest.json`;
  await writeIfChanged(path.join(outDir, manifestKey), JSON.stringify(manifest, null, 2) + '\n');
  return manifestKey;
}

export async function buildSampleMirror(opts: BuildMirrorOptions): Promise<BuiltMirror> {
  const snapshot = opts.snapshot ?? '2026-11-01';
  const lastModified = `${snapshot}T00:00:00.000Z`;
  const files = (await fs.readdir(opts.nxmlDir)).filter((f) => /\.(n?xml)$/i.test(f)).sort();
  const sources: { file: string; read: () => Promise<Buffer> }[] = files.map((file) => ({
    file,
    read: () => fs.readFile(path.join(opts.nxmlDir, file)),
  }));
  if (opts.synthetic) {
    for (const a of syntheticArticles()) sources.push({ file: a.file, read: async () => Buffer.from(a.xml) });
  }
  const inventoryRows: string[] = [];
  const result: BuiltMirror = {
    outDir: opts.outDir,
    articles: 0,
    mediaFiles: 0,
    generatedImages: 0,
    realImages: 0,
    inventoryManifestKey: '',
    faults: { corrupt: [], missing: [] },
  };
  let corruptLeft = opts.faults?.corruptImages ?? 0;
  let missingLeft = opts.faults?.missingImages ?? 0;

  for (const { file, read } of sources) {
    const pmcidFromName = /^(PMC\d+)/.exec(file)?.[1];
    if (!pmcidFromName) continue;
    const xmlBytes = await read();
    const xml = xmlBytes.toString('utf8');
    const article = parseJats(xmlBytes, { pmcidHint: pmcidFromName });
    const pmcid = article.pmcid ?? pmcidFromName;
    const version = article.version ?? 1;
    const prefix = `${pmcid}.${version}`;
    const dir = path.join(opts.outDir, prefix);

    // Media: real files for the article where present (every file whose stem is a graphic href), else generated.
    const realDir = opts.imagesDir ? path.join(opts.imagesDir, pmcid) : null;
    const realFiles = realDir ? await fs.readdir(realDir).catch(() => [] as string[]) : [];
    const media = new Map<string, Buffer>();
    for (const rawHref of graphicHrefs(xml)) {
      // A media file lives directly in the article's folder, named as the href's last segment (as parse resolves
      // it): an href with a folder, `..` or a backslash never names a path outside this mirror.
      const href = path.posix.basename(rawHref.replace(/\\/g, '/'));
      if (!href || href === '.' || href === '..' || /[\u0000-\u001f]/.test(href)) continue;
      const stem = href.replace(IMAGE_EXT, '');
      const real = realFiles.filter((f) => f.replace(IMAGE_EXT, '') === stem).sort();
      if (real.length > 0) {
        for (const f of real) media.set(f, await fs.readFile(path.join(realDir!, f)));
        result.realImages += real.length;
        continue;
      }
      const ext = IMAGE_EXT.exec(href)?.[1]?.toLowerCase() ?? pickExtension(pmcid, href);
      const name = IMAGE_EXT.test(href) ? href : `${href}.${ext}`;
      media.set(name, await syntheticImage(pmcid, href, ext));
      result.generatedImages++;
    }
    // Faults go only into figure graphics (not table or formula images), where they change the release's output.
    const figureStems = new Set(
      // a graphical abstract is not published by default, so a fault there would change nothing
      article.figures
        .filter((f) => f.caption.trim() && f.role === 'figure')
        .map((f) => f.graphicHref.replace(IMAGE_EXT, '')),
    );
    const mediaUrls: string[] = [];
    for (const [name, body0] of [...media.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      let body = body0;
      const isFigureCandidate = /\.(jpe?g|png|tiff?)$/i.test(name) && figureStems.has(name.replace(IMAGE_EXT, ''));
      if (corruptLeft > 0 && isFigureCandidate && !result.faults.corrupt.some((k) => k.startsWith(prefix))) {
        body = body.subarray(0, Math.floor(body.length / 3)); // a publisher-side truncated file: md5 matches the broken bytes
        corruptLeft--;
        result.faults.corrupt.push(`${prefix}/${name}`);
      } else if (
        missingLeft > 0 &&
        isFigureCandidate &&
        !result.faults.corrupt.some((k) => k.startsWith(prefix)) &&
        !result.faults.missing.some((k) => k.startsWith(prefix))
      ) {
        missingLeft--;
        result.faults.missing.push(`${prefix}/${name}`);
        mediaUrls.push(`s3://${BUCKET}/${prefix}/${name}?md5=${createHash('md5').update(body).digest('hex')}`);
        continue; // listed in the metadata, absent from the bucket
      }
      await writeIfChanged(path.join(dir, name), body);
      mediaUrls.push(`s3://${BUCKET}/${prefix}/${name}?md5=${createHash('md5').update(body).digest('hex')}`);
      result.mediaFiles++;
    }

    const text = `ARTICLE INFORMATION\n====\nPMCID: ${pmcid}\nDOI: ${article.doi ?? ''}\nLicense: ${article.license.code ?? 'none'}\n\n${article.title ?? ''}\n\n${article.fullText}\n`;
    await writeIfChanged(path.join(dir, `${prefix}.xml`), xmlBytes);
    await writeIfChanged(path.join(dir, `${prefix}.txt`), text);
    const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
    const metadata = {
      pmcid,
      version,
      pmid: article.pmid && /^\d+$/.test(article.pmid) ? Number(article.pmid) : null,
      doi: article.doi,
      title: article.title,
      citation: citationOf(xml, article.journal.isoAbbrev ?? article.journal.title, article.pubDate, article.doi),
      is_pmc_openaccess: true,
      is_manuscript: false,
      is_historical_ocr: false,
      is_retracted: false,
      license_code: article.license.code,
      xml_url: `s3://${BUCKET}/${prefix}/${prefix}.xml?md5=${md5(xmlBytes)}`,
      text_url: `s3://${BUCKET}/${prefix}/${prefix}.txt?md5=${md5(text)}`,
      media_urls: mediaUrls,
    };
    const json = JSON.stringify(metadata, null, 2) + '\n';
    await writeIfChanged(path.join(dir, `${prefix}.json`), json);
    await writeIfChanged(path.join(opts.outDir, 'metadata', `${prefix}.json`), json);
    inventoryRows.push(inventoryRow(`metadata/${prefix}.json`, json, lastModified));
    result.articles++;
  }

  result.inventoryManifestKey = await writeInventory(opts.outDir, inventoryRows, snapshot);
  await writeIfChanged(
    path.join(opts.outDir, 'README.txt'),
    `Sample mirror of the PMC Article Datasets bucket layout, built by biomedica-release from real PMC OA article XML${opts.synthetic ? ' and articles of its own (PMC9000000N)' : ''}.\nGenerated images stand in for figures whose files were not available locally.\n`,
  );
  return result;
}
