import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';
import { SUBSETS, type Subset } from '../../config/release';
import { articleKeyProblem, hasXmlForbidden, isMd5, stripXmlForbidden } from '../common/keys';
import { parseObjectUrl, SourceError, type PmcSource } from '../fetch/source';
import { licenseGroup } from './license';
import { readLineBatches, splitCsvLine } from './lines';

/** The per-version metadata JSON as PMC publishes it (docs/sources.md); unknown fields pass through. */
export const ArticleMetadataSchema = z
  .object({
    pmcid: z.string().regex(/^PMC\d+$/),
    version: z.number().int().positive(),
    pmid: z.union([z.number().int(), z.string()]).nullable().optional(),
    doi: z.string().nullable().optional(),
    title: z.string().nullable().optional(),
    citation: z.string().nullable().optional(),
    is_pmc_openaccess: z.boolean(),
    is_manuscript: z.boolean().optional(),
    is_historical_ocr: z.boolean().optional(),
    is_retracted: z.boolean().optional(),
    license_code: z.string().nullable().optional(),
    xml_url: z.string(),
    pdf_url: z.string().nullable().optional(),
    text_url: z.string().nullable().optional(),
    media_urls: z.array(z.string()).default([]),
  })
  .passthrough();
export type ArticleMetadata = z.infer<typeof ArticleMetadataSchema>;

/** What a unit needs to know about one article version, fixed at planning time. */
export interface PlannedArticle {
  pmcid: string;
  version: number;
  pmid: string | null;
  doi: string | null;
  citation: string | null;
  licenseCode: string | null;
  xml: { key: string; md5: string | null };
  media: { key: string; md5: string | null }[];
  /**
   * Figure-image URLs of the metadata that the plan refused (a key outside the article's own folder, a checksum
   * that is not an md5, a URL that names no bucket object): never fetched, and recorded by parse, once, against the
   * figure whose graphic they would have served (else against the article). Absent when there are none.
   */
  refusedMedia?: RefusedMedia[];
  etag: string;
  /**
   * Legacy source only: the package this article comes from (`oa_package/xx/yy/PMC<id>.tar.gz`) and the list's
   * Last Updated. The fetch stage extracts the package and fills `media` in (the list names no files).
   */
  package?: { path: string; updated: string | null };
}

export interface RefusedMedia {
  /** The key as the metadata gave it (or the whole URL when it names no bucket object). */
  key: string;
  reason: 'unsafe-media-key' | 'foreign-media-key' | 'bad-media-md5' | 'bad-media-url';
  detail: string;
}

/** Metadata that cannot be planned (its XML URL is unusable): the version is excluded as bad-metadata. */
export class BadMetadataError extends Error {
  override readonly name = 'BadMetadataError';
}

export interface PlannedUnit {
  unitId: string;
  subset: Subset;
  index: number;
  articles: PlannedArticle[];
}

export interface InventoryRow {
  key: string;
  lastModified: string;
  etag: string;
}

export interface Exclusion {
  key: string;
  pmcid: string | null;
  reason: 'not-open-access' | 'retracted' | 'superseded-version' | 'bad-metadata' | 'unreadable-metadata';
  detail: string;
}

/**
 * What planning keeps of one article version (one metadata JSON, or one legacy list row): its identity, the
 * inventory ETag it was read at, the two flags selection needs, and the planned article when it can be selected.
 * These are the plan's facts (plan/facts/*.ndjson), which the next release reuses for unchanged ETags.
 */
export interface VersionFacts {
  key: string;
  pmcid: number;
  version: number;
  etag: string;
  oa: boolean;
  retracted: boolean;
  /** Present when oa and not retracted. */
  article: PlannedArticle | null;
  /** Set when the metadata could not be read or does not describe this key: never stored, always read again. */
  error?: { reason: 'unreadable-metadata' | 'bad-metadata'; detail: string };
}

const IMAGE_MEDIA = /\.(jpe?g|png|gif|tiff?)$/i;
const INVENTORY_PREFIX = 'inventory-reports/pmc-oa-opendata/metadata/';

/** The newest dated manifest (skipping `data/` and `hive/`), as the bucket README says. */
export async function latestInventoryManifest(source: PmcSource): Promise<string> {
  const listed = await source.list(INVENTORY_PREFIX, '/');
  const dated = listed.prefixes.filter((p) => /\/\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z\/$/.test(p)).sort();
  if (dated.length === 0) throw new Error(`no inventory manifest under ${INVENTORY_PREFIX} in ${source.description}`);
  return `${dated[dated.length - 1]}manifest.json`;
}

const ManifestSchema = z.object({
  fileSchema: z.string(),
  files: z.array(z.object({ key: z.string(), MD5checksum: z.string().optional() })),
});

/**
 * Streams inventory rows; columns are located by the manifest's fileSchema, never by position. Each data file is
 * streamed (never held whole) and checked against the manifest's MD5checksum at its end; a truncated gzip, a
 * short body or a checksum mismatch fails the iteration, so no caller ever takes a partial inventory for whole.
 */
export async function* readInventory(
  source: PmcSource,
  manifestKey: string,
  opts: { signal?: AbortSignal } = {},
): AsyncGenerator<InventoryRow> {
  for await (const batch of readInventoryBatches(source, manifestKey, opts)) yield* batch;
}

/** As readInventory, a chunk's worth of rows at a time. */
export async function* readInventoryBatches(
  source: PmcSource,
  manifestKey: string,
  opts: { signal?: AbortSignal } = {},
): AsyncGenerator<InventoryRow[]> {
  const manifest = ManifestSchema.parse(
    JSON.parse((await source.get(manifestKey, { signal: opts.signal })).body.toString('utf8')),
  );
  const columns = manifest.fileSchema.split(',').map((c) => c.trim());
  const iKey = columns.indexOf('Key');
  const iEtag = columns.indexOf('ETag');
  const iModified = columns.indexOf('LastModifiedDate');
  if (iKey < 0 || iEtag < 0) throw new Error(`inventory fileSchema lacks Key or ETag: ${manifest.fileSchema}`);
  for (const file of manifest.files) {
    const expectedMd5 = file.MD5checksum ?? null;
    const body: Readable = source.getStream
      ? await source.getStream(file.key, { expectedMd5, signal: opts.signal })
      : Readable.from([(await source.get(file.key, { expectedMd5, signal: opts.signal })).body]);
    const gunzip = createGunzip();
    gunzip.on('error', () => undefined); // kept on the stream; the line reader throws it
    body.on('error', (err) => gunzip.destroy(err));
    try {
      for await (const lines of readLineBatches(body.pipe(gunzip))) {
        const rows: InventoryRow[] = [];
        for (const line of lines) {
          if (line.length === 0 || !line.trim()) continue;
          const cells = splitCsvLine(line, parseCsvLine);
          rows.push({
            key: cells[iKey]!,
            etag: cells[iEtag]!,
            lastModified: iModified >= 0 ? (cells[iModified] ?? '') : '',
          });
        }
        if (rows.length > 0) yield rows;
      }
    } catch (err) {
      body.destroy();
      if (err instanceof SourceError) throw err;
      // zlib: "unexpected end of file" (truncated), "incorrect header check", "invalid block type"...
      throw new SourceError(
        `inventory data file ${file.key} is not a whole gzip: ${(err as Error).message}`,
        'checksum',
        true,
        file.key,
      );
    }
  }
}

export function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * What a unit needs of one metadata JSON. Keys are checked here, once (activities/common/keys.ts): an XML URL that
 * is not an object of this article's own folder, or whose md5 is not one, makes the metadata unusable
 * (BadMetadataError); such a figure-image URL is refused on its own and recorded with the article (`refusedMedia`).
 */
export function toPlannedArticle(meta: ArticleMetadata, etag: string): PlannedArticle {
  const prefix = `${meta.pmcid}.${meta.version}`;
  let xml: { key: string; md5: string | null };
  try {
    xml = parseObjectUrl(meta.xml_url);
  } catch (err) {
    throw new BadMetadataError(`xml_url: ${(err as Error).message}`);
  }
  const xmlProblem = articleKeyProblem(xml.key, prefix);
  if (xmlProblem) throw new BadMetadataError(`xml_url: ${xmlProblem.detail}`);
  if (xml.md5 !== null && !isMd5(xml.md5))
    throw new BadMetadataError(`xml_url: md5 ${JSON.stringify(xml.md5)} is not 32 hex digits`);
  const media: { key: string; md5: string | null }[] = [];
  const refused: RefusedMedia[] = [];
  for (const url of meta.media_urls) {
    let obj: { key: string; md5: string | null };
    try {
      obj = parseObjectUrl(url);
    } catch (err) {
      if (IMAGE_MEDIA.test(url.split('?')[0]!))
        refused.push({ key: url, reason: 'bad-media-url', detail: (err as Error).message });
      continue;
    }
    if (!IMAGE_MEDIA.test(obj.key)) continue;
    const problem = articleKeyProblem(obj.key, prefix);
    if (problem)
      refused.push({
        key: obj.key,
        reason: problem.reason === 'foreign-key' ? 'foreign-media-key' : 'unsafe-media-key',
        detail: problem.detail,
      });
    else if (obj.md5 !== null && !isMd5(obj.md5))
      refused.push({
        key: obj.key,
        reason: 'bad-media-md5',
        detail: `md5 ${JSON.stringify(obj.md5)} of ${obj.key} is not 32 hex digits`,
      });
    else media.push(obj);
  }
  const article: PlannedArticle = {
    pmcid: meta.pmcid,
    version: meta.version,
    pmid: meta.pmid === null || meta.pmid === undefined || meta.pmid === '' ? null : String(meta.pmid),
    doi: cleanText(meta.doi),
    citation: cleanText(meta.citation),
    licenseCode: meta.license_code ?? null,
    xml,
    media,
    etag,
  };
  if (refused.length > 0) article.refusedMedia = refused;
  return article;
}

/** Metadata strings are published (json, parquet): characters XML forbids are dropped from them too. */
function cleanText(s: string | null | undefined): string | null {
  if (s === null || s === undefined) return null;
  return hasXmlForbidden(s) ? stripXmlForbidden(s).text : s;
}

/**
 * Selection for the versions of one PMCID: the newest readable version decides (a retraction or loss of OA
 * status of the newest version removes the article); every other version is recorded as superseded, every
 * unreadable one as such. `pmcid` is `PMC<n>`, or null when the key names none.
 */
const NOTHING_EXCLUDED: Exclusion[] = [];

export function selectVersions(
  pmcid: string | null,
  versions: readonly VersionFacts[],
): { selected: PlannedArticle | null; excluded: Exclusion[] } {
  if (versions.length === 1) {
    // The common case (one version, selectable), without the bookkeeping below.
    const v = versions[0]!;
    if (!v.error && v.oa && !v.retracted && v.article) return { selected: v.article, excluded: NOTHING_EXCLUDED };
  }
  const excluded: Exclusion[] = [];
  let newest: VersionFacts | null = null;
  const readable: VersionFacts[] = [];
  for (const v of versions) {
    if (v.error) {
      excluded.push({ key: v.key, pmcid, reason: v.error.reason, detail: v.error.detail });
      continue;
    }
    readable.push(v);
    if (!newest || v.version > newest.version) newest = v;
  }
  for (const v of readable) {
    if (v !== newest)
      excluded.push({
        key: v.key,
        pmcid,
        reason: 'superseded-version',
        detail: `version ${v.version} superseded by ${newest!.version}`,
      });
  }
  if (!newest) return { selected: null, excluded };
  if (!newest.oa)
    excluded.push({ key: newest.key, pmcid, reason: 'not-open-access', detail: 'is_pmc_openaccess is false' });
  else if (newest.retracted)
    excluded.push({ key: newest.key, pmcid, reason: 'retracted', detail: 'is_retracted is true' });
  else if (newest.article) return { selected: newest.article, excluded };
  return { selected: null, excluded };
}

/** The facts of one metadata JSON, as read for inventory key `key` (identity taken from the metadata itself). */
export function factsOf(key: string, etag: string, meta: ArticleMetadata): VersionFacts {
  const oa = meta.is_pmc_openaccess;
  const retracted = meta.is_retracted === true;
  const facts: VersionFacts = {
    key,
    pmcid: Number(meta.pmcid.slice(3)),
    version: meta.version,
    etag,
    oa,
    retracted,
    article: null,
  };
  if (!oa || retracted) return facts;
  try {
    facts.article = toPlannedArticle(meta, etag);
  } catch (err) {
    if (!(err instanceof BadMetadataError)) throw err;
    return { ...facts, oa: false, error: { reason: 'bad-metadata', detail: `${key}: ${err.message}`.slice(0, 500) } };
  }
  return facts;
}

/**
 * Keeps open-access, non-retracted versions, the newest version of each PMCID, and records every exclusion.
 * Pure: the caller fetched the metadata. (The streaming planner applies the same `selectVersions` per PMCID.)
 */
export function selectArticles(entries: { row: InventoryRow; meta: ArticleMetadata | null; error?: string }[]): {
  selected: PlannedArticle[];
  excluded: Exclusion[];
} {
  const groups = new Map<string, VersionFacts[]>();
  const unreadable: Exclusion[] = [];
  for (const { row, meta, error } of entries) {
    if (!meta) {
      unreadable.push({
        key: row.key,
        pmcid: /PMC\d+/.exec(row.key)?.[0] ?? null,
        reason: 'unreadable-metadata',
        detail: error ?? 'no metadata',
      });
      continue;
    }
    const list = groups.get(meta.pmcid) ?? [];
    list.push(factsOf(row.key, row.etag, meta));
    groups.set(meta.pmcid, list);
  }
  const selected: PlannedArticle[] = [];
  const excluded: Exclusion[] = [...unreadable];
  for (const [pmcid, versions] of groups) {
    const r = selectVersions(pmcid, versions);
    if (r.selected) selected.push(r.selected);
    excluded.push(...r.excluded);
  }
  selected.sort((a, b) => Number(a.pmcid.slice(3)) - Number(b.pmcid.slice(3)));
  excluded.sort((a, b) => a.key.localeCompare(b.key));
  return { selected, excluded };
}

/**
 * The unit cutting rule, whatever a unit is kept as. Cuts the articles of one subset into units as they come
 * (PMCIDs ascending): a unit closes before an article that would take it past maxArticles articles or maxImages
 * figure images; an article with more images than maxImages gets a unit of its own. Units are numbered per subset
 * from 0, `<subset>-NNNNNN`. A subclass keeps the open unit's articles: `keep` is handed each run of a pushed list
 * that lands in one unit (in order), `build` makes the unit of the runs kept since the last one.
 */
export abstract class UnitCutterBase<U> {
  private count = 0;
  private images = 0;
  private openFigureImages = 0;
  /** Units closed so far, and their articles and figure images. */
  units = 0;
  articles = 0;
  figureImages = 0;
  constructor(
    readonly subset: Subset,
    private readonly limits: { maxArticles: number; maxImages: number },
  ) {}
  /** Adds the next articles (PMCIDs ascending); returns the units they closed. */
  pushAll(list: readonly PlannedArticle[]): U[] {
    const closed: U[] = [];
    let run = 0;
    for (let k = 0; k < list.length; k++) {
      const a = list[k]!;
      const n = Math.min(a.media.length, this.limits.maxImages);
      if (this.count >= this.limits.maxArticles || (this.count > 0 && this.images + n > this.limits.maxImages)) {
        if (k > run) this.keep(list, run, k);
        run = k;
        closed.push(this.close());
      }
      this.count++;
      this.images += n;
      this.openFigureImages += a.media.length;
    }
    if (list.length > run) this.keep(list, run, list.length);
    return closed;
  }
  /** Closes the open unit, if it has any article. */
  flush(): U | null {
    return this.count > 0 ? this.close() : null;
  }
  /** Keeps `list[from..to)`, the next articles of the open unit. */
  protected abstract keep(list: readonly PlannedArticle[], from: number, to: number): void;
  /** The open unit, of every article kept since the last unit; forgets them. */
  protected abstract build(unitId: string, index: number): U;
  /** The id of the open unit (the next to close). */
  protected openUnitId(): string {
    return `${this.subset}-${String(this.units).padStart(6, '0')}`;
  }
  private close(): U {
    const unit = this.build(this.openUnitId(), this.units);
    this.units++;
    this.articles += this.count;
    this.figureImages += this.openFigureImages;
    this.count = 0;
    this.images = 0;
    this.openFigureImages = 0;
    return unit;
  }
}

/** The unit cutter that keeps units as PlannedUnit objects. */
export class UnitCutter extends UnitCutterBase<PlannedUnit> {
  private current: PlannedArticle[] = [];
  /** Adds the next article; returns the unit it closed, if any. */
  push(a: PlannedArticle): PlannedUnit | null {
    return this.pushAll([a])[0] ?? null;
  }
  protected keep(list: readonly PlannedArticle[], from: number, to: number): void {
    for (let i = from; i < to; i++) this.current.push(list[i]!);
  }
  protected build(unitId: string, index: number): PlannedUnit {
    const unit: PlannedUnit = { unitId, subset: this.subset, index, articles: this.current };
    this.current = [];
    return unit;
  }
}

/** Units fixed at planning time: per subset, sorted PMCIDs, cut by article count and by figure-image count. */
export function cutUnits(
  selected: readonly PlannedArticle[],
  limits: { maxArticles: number; maxImages: number },
): PlannedUnit[] {
  const units: PlannedUnit[] = [];
  for (const subset of SUBSETS) {
    const cutter = new UnitCutter(subset, limits);
    for (const a of selected) {
      if (licenseGroup(a.licenseCode) !== subset) continue;
      const closed = cutter.push(a);
      if (closed) units.push(closed);
    }
    const last = cutter.flush();
    if (last) units.push(last);
  }
  return units;
}
