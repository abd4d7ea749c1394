import * as readline from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';
import { SUBSETS, type Subset } from '../../config/release';
import { parseObjectUrl, type PmcSource } from '../fetch/source';
import { licenseGroup } from './license';

/** The per-version metadata JSON as PMC publishes it (reference/pmc-sources.md §1.4); unknown fields pass through. */
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
  etag: string;
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

/** Streams inventory rows; columns are located by the manifest's fileSchema, never by position. */
export async function* readInventory(source: PmcSource, manifestKey: string): AsyncGenerator<InventoryRow> {
  const manifest = ManifestSchema.parse(JSON.parse((await source.get(manifestKey)).body.toString('utf8')));
  const columns = manifest.fileSchema.split(',').map((c) => c.trim());
  const iKey = columns.indexOf('Key');
  const iEtag = columns.indexOf('ETag');
  const iModified = columns.indexOf('LastModifiedDate');
  if (iKey < 0 || iEtag < 0) throw new Error(`inventory fileSchema lacks Key or ETag: ${manifest.fileSchema}`);
  for (const file of manifest.files) {
    const obj = await source.get(file.key, { expectedMd5: file.MD5checksum ?? null });
    const lines = readline.createInterface({ input: Readable.from(obj.body).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.trim()) continue;
      const cells = parseCsvLine(line);
      yield { key: cells[iKey]!, etag: cells[iEtag]!, lastModified: iModified >= 0 ? cells[iModified]! : '' };
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

export function toPlannedArticle(meta: ArticleMetadata, etag: string): PlannedArticle {
  return {
    pmcid: meta.pmcid,
    version: meta.version,
    pmid: meta.pmid === null || meta.pmid === undefined || meta.pmid === '' ? null : String(meta.pmid),
    doi: meta.doi ?? null,
    citation: meta.citation ?? null,
    licenseCode: meta.license_code ?? null,
    xml: parseObjectUrl(meta.xml_url),
    media: meta.media_urls.map(parseObjectUrl).filter((m) => IMAGE_MEDIA.test(m.key)),
    etag,
  };
}

/**
 * Keeps open-access, non-retracted versions, the newest version of each PMCID, and records every exclusion.
 * Pure: the caller fetched the metadata.
 */
export function selectArticles(entries: { row: InventoryRow; meta: ArticleMetadata | null; error?: string }[]): {
  selected: PlannedArticle[];
  excluded: Exclusion[];
} {
  const excluded: Exclusion[] = [];
  const newest = new Map<string, { meta: ArticleMetadata; row: InventoryRow }>();
  for (const { row, meta, error } of entries) {
    if (!meta) {
      excluded.push({ key: row.key, pmcid: /PMC\d+/.exec(row.key)?.[0] ?? null, reason: 'unreadable-metadata', detail: error ?? 'no metadata' });
      continue;
    }
    const prev = newest.get(meta.pmcid);
    if (!prev || meta.version > prev.meta.version) {
      if (prev) excluded.push({ key: prev.row.key, pmcid: meta.pmcid, reason: 'superseded-version', detail: `version ${prev.meta.version} superseded by ${meta.version}` });
      newest.set(meta.pmcid, { meta, row });
    } else {
      excluded.push({ key: row.key, pmcid: meta.pmcid, reason: 'superseded-version', detail: `version ${meta.version} superseded by ${prev.meta.version}` });
    }
  }
  const selected: PlannedArticle[] = [];
  for (const { meta, row } of newest.values()) {
    // Decided on the newest version only: a retraction or loss of OA status of the newest version removes the article.
    if (!meta.is_pmc_openaccess) excluded.push({ key: row.key, pmcid: meta.pmcid, reason: 'not-open-access', detail: 'is_pmc_openaccess is false' });
    else if (meta.is_retracted) excluded.push({ key: row.key, pmcid: meta.pmcid, reason: 'retracted', detail: 'is_retracted is true' });
    else selected.push(toPlannedArticle(meta, row.etag));
  }
  selected.sort((a, b) => Number(a.pmcid.slice(3)) - Number(b.pmcid.slice(3)));
  excluded.sort((a, b) => a.key.localeCompare(b.key));
  return { selected, excluded };
}

/** Units fixed at planning time: per subset, sorted PMCIDs, cut by article count and by figure-image count. */
export function cutUnits(selected: readonly PlannedArticle[], limits: { maxArticles: number; maxImages: number }): PlannedUnit[] {
  const units: PlannedUnit[] = [];
  for (const subset of SUBSETS) {
    let current: PlannedArticle[] = [];
    let images = 0;
    const flush = () => {
      if (current.length === 0) return;
      const index = units.filter((u) => u.subset === subset).length;
      units.push({ unitId: `${subset}-${String(index).padStart(6, '0')}`, subset, index, articles: current });
      current = [];
      images = 0;
    };
    for (const a of selected) {
      if (licenseGroup(a.licenseCode) !== subset) continue;
      const n = Math.min(a.media.length, limits.maxImages);
      if (current.length >= limits.maxArticles || (current.length > 0 && images + n > limits.maxImages)) flush();
      current.push(a);
      images += n;
    }
    flush();
  }
  return units;
}
