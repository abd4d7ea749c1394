/**
 * Parquet export of the published samples (one row per figure), written with @dsnp/parquetjs.
 *
 * Layout choices, fixed so files are reproducible and readable by pyarrow / HF datasets:
 * - strings UTF8, integers INT64, lists as repeated UTF8 fields (pyarrow reads list<string>),
 *   nullable pmid/doi as optional UTF8, the image as an optional BYTE_ARRAY column that exists
 *   only when includeImageBytes is set;
 * - SNAPPY compression, data page v1, no page index, and no min/max statistics on the image
 *   and long free-text columns (parquetjs does not truncate them, so they would bloat the footer);
 * - parquetjs writes no timestamps (created_by is a constant), so equal rows give equal bytes.
 * Like the tar shards, the file is written under a temp name, fsynced and renamed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ParquetReader, ParquetSchema, ParquetWriter } from '@dsnp/parquetjs';
import { z } from 'zod';

export type SampleRow = {
  key: string;
  shard: string;
  subset: string;
  caption: string;
  image_width: number;
  image_height: number;
  image_bytes_size: number;
  image_sha256: string;
  image?: Buffer;
  image_file_name: string;
  image_cluster_id: string;
  image_hash: string;
  image_label_id: string;
  image_panel_type: string;
  image_panel_subtype: string;
  image_primary_label: string[];
  image_secondary_label: string[];
  article_accession_id: string;
  article_title: string;
  article_journal: string;
  article_date: string;
  article_abstract: string;
  article_mesh_terms: string[];
  article_keywords: string[];
  article_reference_ids: string[];
  article_reference_count: number;
  article_subject: string[];
  article_citation: string;
  article_license: string;
  article_pmid: string | null;
  article_doi: string | null;
  caption_json?: never;
};

const count = z.number().int().nonnegative();
const strList = z.array(z.string());

/** Strict: an unknown key (e.g. caption_json) is a caller bug, not a column to drop silently. */
export const SampleRowSchema: z.ZodType<SampleRow> = z.strictObject({
  key: z.string().min(1),
  shard: z.string(),
  subset: z.string(),
  caption: z.string(),
  image_width: count,
  image_height: count,
  image_bytes_size: count,
  image_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  image: z.instanceof(Buffer).optional(),
  image_file_name: z.string(),
  image_cluster_id: z.string(),
  image_hash: z.string(),
  image_label_id: z.string(),
  image_panel_type: z.string(),
  image_panel_subtype: z.string(),
  image_primary_label: strList,
  image_secondary_label: strList,
  article_accession_id: z.string(),
  article_title: z.string(),
  article_journal: z.string(),
  article_date: z.string(),
  article_abstract: z.string(),
  article_mesh_terms: strList,
  article_keywords: strList,
  article_reference_ids: strList,
  article_reference_count: count,
  article_subject: strList,
  article_citation: z.string(),
  article_license: z.string(),
  article_pmid: z.string().nullable(),
  article_doi: z.string().nullable(),
  caption_json: z.never().optional(),
});

type Kind = 'str' | 'int' | 'list' | 'nullable' | 'bytes';

/** Column order of the file; `image` is dropped when image bytes are not included. */
const COLUMNS: readonly (readonly [keyof SampleRow, Kind])[] = [
  ['key', 'str'], ['shard', 'str'], ['subset', 'str'], ['caption', 'str'],
  ['image_width', 'int'], ['image_height', 'int'], ['image_bytes_size', 'int'], ['image_sha256', 'str'],
  ['image', 'bytes'],
  ['image_file_name', 'str'], ['image_cluster_id', 'str'], ['image_hash', 'str'], ['image_label_id', 'str'],
  ['image_panel_type', 'str'], ['image_panel_subtype', 'str'],
  ['image_primary_label', 'list'], ['image_secondary_label', 'list'],
  ['article_accession_id', 'str'], ['article_title', 'str'], ['article_journal', 'str'], ['article_date', 'str'],
  ['article_abstract', 'str'], ['article_mesh_terms', 'list'], ['article_keywords', 'list'],
  ['article_reference_ids', 'list'], ['article_reference_count', 'int'], ['article_subject', 'list'],
  ['article_citation', 'str'], ['article_license', 'str'], ['article_pmid', 'nullable'], ['article_doi', 'nullable'],
];

/** Columns whose min/max statistics would be whole images or paragraphs. */
const NO_STATS = new Set<string>(['image', 'caption', 'article_title', 'article_abstract', 'article_citation', 'article_mesh_terms', 'article_reference_ids']);

export const PARQUET_COMPRESSION = 'SNAPPY' as const;
export const DEFAULT_ROW_GROUP_SIZE = 1000;

export function sampleParquetSchema(includeImageBytes: boolean): ParquetSchema {
  const def: Record<string, Record<string, unknown>> = {};
  for (const [name, kind] of COLUMNS) {
    if (kind === 'bytes' && !includeImageBytes) continue;
    const field: Record<string, unknown> = { compression: PARQUET_COMPRESSION };
    if (kind === 'int') field.type = 'INT64';
    else if (kind === 'bytes') Object.assign(field, { type: 'BYTE_ARRAY', optional: true });
    else Object.assign(field, { type: 'UTF8', ...(kind === 'list' ? { repeated: true } : {}), ...(kind === 'nullable' ? { optional: true } : {}) });
    if (NO_STATS.has(name)) field.statistics = false;
    def[name] = field;
  }
  return new ParquetSchema(def as ConstructorParameters<typeof ParquetSchema>[0]);
}

export interface ParquetWriteOptions {
  /** Add the `image` column with the jpg bytes (rows without `image` get null). Default false. */
  includeImageBytes?: boolean;
  /** Rows per row group; default 1000 (bounds writer memory when images are included). */
  rowGroupSize?: number;
}

export interface WrittenParquet {
  path: string;
  rows: number;
  bytes: number;
  sha256: string;
}

function toRecord(row: SampleRow, includeImageBytes: boolean): Record<string, unknown> {
  const rec: Record<string, unknown> = {};
  for (const [name, kind] of COLUMNS) {
    const v = row[name];
    if (kind === 'bytes') {
      if (includeImageBytes && v !== undefined) rec[name] = v;
    } else if (kind === 'int') rec[name] = BigInt(v as number);
    else if (kind === 'nullable') {
      if (v !== null) rec[name] = v;
    } else rec[name] = v;
  }
  return rec;
}

export async function writeSamplesParquet(finalPath: string, rows: SampleRow[], opts: ParquetWriteOptions = {}): Promise<WrittenParquet> {
  const includeImageBytes = opts.includeImageBytes ?? false;
  const rowGroupSize = opts.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
  if (!Number.isInteger(rowGroupSize) || rowGroupSize < 1) throw new RangeError(`rowGroupSize must be a positive integer, got ${rowGroupSize}`);
  // Validate everything before creating a file, so a bad row never leaves a partial behind.
  rows.forEach((row, i) => {
    const parsed = SampleRowSchema.safeParse(row);
    if (!parsed.success) throw new Error(`sample row ${i} (${String(row?.key)}) is invalid: ${parsed.error.message}`);
    if (includeImageBytes && row.image) {
      if (row.image.length !== row.image_bytes_size) throw new Error(`sample ${row.key}: image has ${row.image.length} bytes, image_bytes_size says ${row.image_bytes_size}`);
      const sha = createHash('sha256').update(row.image).digest('hex');
      if (sha !== row.image_sha256) throw new Error(`sample ${row.key}: image bytes do not match image_sha256`);
    }
  });

  await fsp.mkdir(path.dirname(finalPath), { recursive: true });
  const partialPath = `${finalPath}.partial-${process.pid}`;
  try {
    const out = createWriteStream(partialPath);
    await new Promise<void>((resolve, reject) => out.once('open', () => resolve()).once('error', reject));
    // Data page v1 and no page index: the most widely readable layout, and smaller footers.
    const writer = await ParquetWriter.openStream(sampleParquetSchema(includeImageBytes), out, {
      rowGroupSize,
      useDataPageV2: false,
      pageIndex: false,
    });
    for (const row of rows) await writer.appendRow(toRecord(row, includeImageBytes));
    await writer.close();
    const fh = await fsp.open(partialPath, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const { bytes, sha256 } = await hashFile(partialPath);
    await fsp.rename(partialPath, finalPath);
    return { path: finalPath, rows: rows.length, bytes, sha256 };
  } catch (err) {
    await fsp.rm(partialPath, { force: true });
    throw err;
  }
}

async function hashFile(file: string): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: h.digest('hex') };
}

/** Reads a file written by writeSamplesParquet back into SampleRows (for checks and tests). */
export async function readSamplesParquet(file: string): Promise<SampleRow[]> {
  const reader = await ParquetReader.openFile(file);
  try {
    const cursor = reader.getCursor();
    const rows: SampleRow[] = [];
    for (let rec = await cursor.next(); rec; rec = await cursor.next()) {
      const r = rec as Record<string, unknown>;
      const row: Record<string, unknown> = {};
      for (const [name, kind] of COLUMNS) {
        const v = r[name];
        if (kind === 'bytes') {
          if (v !== undefined && v !== null) row[name] = Buffer.from(v as Buffer);
        } else if (kind === 'int') row[name] = Number(v);
        else if (kind === 'list') row[name] = v === undefined || v === null ? [] : (v as string[]);
        else if (kind === 'nullable') row[name] = v === undefined ? null : v;
        else row[name] = v;
      }
      rows.push(row as SampleRow);
    }
    return rows;
  } finally {
    await reader.close();
  }
}
