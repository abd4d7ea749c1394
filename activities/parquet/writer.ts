/**
 * Parquet export of the published samples (one row per figure), written with @dsnp/parquetjs.
 *
 * Every one of the 25 json keys is a column of the same name with the same value (docs/dataset-format.md),
 * plus key, shard, subset, caption, width, height, byte size, sha256, pmid, doi, the raw MathML of the caption and of
 * the article (caption_mathml, article_mathml), the figure's role (figure_role) and optionally the jpg bytes.
 * Layout choices, fixed so files are reproducible and readable by pyarrow / HF datasets:
 * - strings UTF8, integers INT64, lists as repeated fields (pyarrow reads list<string> / list<int64>),
 *   nullable pmid/doi as optional UTF8, the image as an optional BYTE_ARRAY column that exists
 *   only when includeImageBytes is set;
 * - image_set as a repeated group (pyarrow: list<struct<image_id, image_file_name, image_path, caption, hash>>),
 *   image_context, a JSON object keyed by figure id, as a repeated group of (image_id, paragraphs) in the
 *   object's key order (list<struct<image_id: string, paragraphs: list<string>>>): typed, and one schema for
 *   every row, where a struct keyed by figure ids would differ from article to article;
 * - SNAPPY compression, data page v1, no page index, and no min/max statistics on the image
 *   and long free-text columns (parquetjs does not truncate them, so they would bloat the footer);
 *   statistics on the short columns you filter by (key, subset, labels, journal, date, license, ...);
 * - row groups of at most 1,000 rows and about 32 MiB of values, so a reader skips whole groups by their
 *   statistics and a writer or reader never holds more than one group (images included) in memory: rows are
 *   streamed in and each group is written as it fills;
 * - parquetjs writes no timestamps (created_by is a constant), so equal rows give equal bytes.
 * Like the tar shards, the file is written under a temp name, fsynced and renamed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ParquetReader, ParquetSchema, ParquetWriter } from '@dsnp/parquetjs';
import { z } from 'zod';
import { partialPathOf, removeStalePartials } from '../common/files';
import { FIGURE_ROLES, type FigureRole } from '../parse/records';
import { PUBLISHED_KEYS, type ImageSetEntry, type PublishedSampleJson } from '../shard/sample-json';

export type { ImageSetEntry };

/** One key of the published `image_context` object: a figure id and the paragraphs that cite it. */
export interface ImageContextEntry {
  image_id: string;
  paragraphs: string[];
}

/** One author of the article (activities/enrich/reconcile.ts): JATS's byline, completed from PubMed. */
export interface AuthorColumn {
  name: string;
  surname: string | null;
  given_names: string | null;
  group: boolean;
  /** bare ORCID iD, "0000-0002-1825-0097" */
  orcid: string | null;
  corresponding: boolean;
  affiliations: string[];
  /** where the entry's values come from: "jats", "jats+pubmed" (PubMed filled the ORCID or affiliations), "pubmed" */
  source: 'jats' | 'jats+pubmed' | 'pubmed';
}

/** One PubMed ChemicalList entry. */
export interface ChemicalColumn {
  /** CAS, UNII or EC number; null where PubMed gives "0" (none) */
  registry_number: string | null;
  name: string;
  /** MeSH UI of the substance */
  ui: string | null;
}

/** One PubMed History date: PubStatus (received, accepted, pubmed, entrez, medline...) and its ISO day. */
export interface HistoryColumn {
  status: string;
  date: string;
}

/** Columns of article metadata beyond the published json (issue 15); never json keys. */
export interface PubmedColumns {
  article_authors: AuthorColumn[];
  article_chemicals: ChemicalColumn[];
  /** PubMed ArticleDate (electronic publication), ISO with the precision given */
  article_pubmed_article_date: string | null;
  article_pubmed_history: HistoryColumn[];
}

/** A row's columns beyond the published json: key to image before the 25 json keys, pmid and doi after them. */
export interface SampleRowFields extends PubmedColumns {
  key: string;
  shard: string;
  subset: string;
  caption: string;
  image_width: number;
  image_height: number;
  image_bytes_size: number;
  image_sha256: string;
  image?: Buffer;
  article_pmid: string | null;
  article_doi: string | null;
  /** the MathML markup of each formula in the caption, as written (the caption holds their linear text) */
  caption_mathml?: string[];
  /** the MathML markup of each formula in the article's title, abstracts and body, as written, in order */
  article_mathml?: string[];
  /** 'graphical-abstract' for an abstract's image published on request (release figures.graphicalAbstracts) */
  figure_role?: FigureRole;
  caption_json?: never;
}

/**
 * One row: the 25 keys of the published json (declared once, in PublishedSampleJson) with the same values, but
 * image_context kept as a list of (image_id, paragraphs) entries, and the row's own fields.
 */
export interface SampleRow
  extends
    Omit<PublishedSampleJson, 'image_context'>,
    Omit<SampleRowFields, 'caption_mathml' | 'article_mathml' | 'figure_role'> {
  image_context: ImageContextEntry[];
  caption_mathml: string[];
  article_mathml: string[];
  figure_role: FigureRole;
}

/** The Parquet-only columns of a row whose article has none of them (no authors, no PubMed dates, no MathML). */
export function emptyParquetOnlyColumns(): Pick<
  SampleRow,
  | 'article_authors'
  | 'article_chemicals'
  | 'article_pubmed_article_date'
  | 'article_pubmed_history'
  | 'caption_mathml'
  | 'article_mathml'
  | 'figure_role'
> {
  return {
    article_authors: [],
    article_chemicals: [],
    article_pubmed_article_date: null,
    article_pubmed_history: [],
    caption_mathml: [],
    article_mathml: [],
    figure_role: 'figure',
  };
}

const count = z.number().int().nonnegative();
const strList = z.array(z.string());

const sampleRowShape = {
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
  image_size: z.tuple([count, count]),
  image_set: z.array(
    z.strictObject({
      image_id: z.string(),
      image_file_name: z.string(),
      image_path: z.string(),
      caption: z.string(),
      hash: z.string().nullable(),
    }),
  ),
  image_context: z.array(z.strictObject({ image_id: z.string(), paragraphs: strList })),
  article_accession_id: z.string(),
  article_title: z.string(),
  article_journal: z.string(),
  article_date: z.string(),
  article_abstract: z.string(),
  article_mesh_terms: strList,
  article_keywords: strList,
  article_reference_ids: strList,
  article_reference_count: count,
  article_reference_list: strList,
  article_subject: strList,
  article_citation: z.string(),
  article_license: z.string(),
  article_text: z.string(),
  article_pmid: z.string().nullable(),
  article_doi: z.string().nullable(),
  article_authors: z.array(
    z.strictObject({
      name: z.string().min(1),
      surname: z.string().nullable(),
      given_names: z.string().nullable(),
      group: z.boolean(),
      orcid: z.string().nullable(),
      corresponding: z.boolean(),
      affiliations: strList,
      source: z.enum(['jats', 'jats+pubmed', 'pubmed']),
    }),
  ),
  article_chemicals: z.array(
    z.strictObject({ registry_number: z.string().nullable(), name: z.string().min(1), ui: z.string().nullable() }),
  ),
  article_pubmed_article_date: z.string().nullable(),
  article_pubmed_history: z.array(z.strictObject({ status: z.string(), date: z.string() })),
  caption_mathml: strList,
  article_mathml: strList,
  figure_role: z.enum(FIGURE_ROLES),
  caption_json: z.never().optional(),
} satisfies { [K in keyof SampleRow]-?: z.ZodType<SampleRow[K]> }; // every key of SampleRow, and no other

/** Strict: an unknown key (e.g. caption_json) is a caller bug, not a column to drop silently. */
export const SampleRowSchema: z.ZodType<SampleRow> = z.strictObject(sampleRowShape);

/** The keys every row has: those the schema does not let be absent (all but `image` and `caption_json`). */
export const REQUIRED_ROW_KEYS: readonly string[] = Object.entries(sampleRowShape)
  .filter(([, schema]) => !schema.safeParse(undefined).success)
  .map(([key]) => key);

type Kind = 'str' | 'int' | 'list' | 'intList' | 'nullable' | 'bytes' | 'imageSet' | 'imageContext' | StructList;

/** A list of structs given by its fields: 'str' required, 'str?' nullable, 'bool', 'strs' a list of strings. */
type StructField = 'str' | 'str?' | 'bool' | 'strs';
interface StructList {
  readonly struct: Readonly<Record<string, StructField>>;
}

const AUTHOR_FIELDS: { readonly [K in keyof AuthorColumn]-?: StructField } = {
  name: 'str',
  surname: 'str?',
  given_names: 'str?',
  group: 'bool',
  orcid: 'str?',
  corresponding: 'bool',
  affiliations: 'strs',
  source: 'str',
};
const CHEMICAL_FIELDS: { readonly [K in keyof ChemicalColumn]-?: StructField } = {
  registry_number: 'str?',
  name: 'str',
  ui: 'str?',
};
const HISTORY_FIELDS: { readonly [K in keyof HistoryColumn]-?: StructField } = { status: 'str', date: 'str' };
type Column = Exclude<keyof SampleRow, 'caption_json'>;

/** Every column of SampleRow (and no other) with its kind, in the file's column order. */
const COLUMN_KINDS: { readonly [K in Column]-?: Kind } = {
  key: 'str',
  shard: 'str',
  subset: 'str',
  caption: 'str',
  image_width: 'int',
  image_height: 'int',
  image_bytes_size: 'int',
  image_sha256: 'str',
  image: 'bytes',
  // The 25 published json keys, in the published order.
  image_file_name: 'str',
  image_cluster_id: 'str',
  image_hash: 'str',
  image_label_id: 'str',
  image_panel_type: 'str',
  image_panel_subtype: 'str',
  image_primary_label: 'list',
  image_secondary_label: 'list',
  image_size: 'intList',
  image_set: 'imageSet',
  image_context: 'imageContext',
  article_accession_id: 'str',
  article_title: 'str',
  article_journal: 'str',
  article_date: 'str',
  article_abstract: 'str',
  article_mesh_terms: 'list',
  article_keywords: 'list',
  article_reference_ids: 'list',
  article_reference_count: 'int',
  article_reference_list: 'list',
  article_subject: 'list',
  article_citation: 'str',
  article_license: 'str',
  article_text: 'str',
  article_pmid: 'nullable',
  article_doi: 'nullable',
  // Article metadata beyond the json (issue 15): authors, chemicals and PubMed's dates.
  article_authors: { struct: AUTHOR_FIELDS },
  article_chemicals: { struct: CHEMICAL_FIELDS },
  article_pubmed_article_date: 'nullable',
  article_pubmed_history: { struct: HISTORY_FIELDS },
  caption_mathml: 'list',
  article_mathml: 'list',
  figure_role: 'str',
};

/** Column order of the file; `image` is dropped when image bytes are not included. */
const COLUMNS = Object.entries(COLUMN_KINDS) as [Column, Kind][];

/** Columns whose min/max statistics would be whole images or paragraphs (or nested groups of them). */
const NO_STATS = new Set<string>([
  'image',
  'caption',
  'image_set',
  'image_context',
  'article_title',
  'article_abstract',
  'article_citation',
  'article_mesh_terms',
  'article_reference_ids',
  'article_reference_list',
  'article_text',
  'caption_mathml',
  'article_mathml',
]);

export const PARQUET_COMPRESSION = 'SNAPPY' as const;
export const DEFAULT_ROW_GROUP_SIZE = 1000;
/** Upper bound of a row group's values (image bytes and text), before compression. */
export const DEFAULT_ROW_GROUP_BYTES = 32 * 1024 * 1024;

type FieldDef = Record<string, unknown>;

function utf8(name: string, extra: FieldDef = {}): FieldDef {
  return {
    type: 'UTF8',
    compression: PARQUET_COMPRESSION,
    ...(NO_STATS.has(name) ? { statistics: false } : {}),
    ...extra,
  };
}

export function sampleParquetSchema(includeImageBytes: boolean): ParquetSchema {
  const def: Record<string, FieldDef> = {};
  const text = (extra: FieldDef = {}): FieldDef => ({
    type: 'UTF8',
    compression: PARQUET_COMPRESSION,
    statistics: false,
    ...extra,
  });
  for (const [name, kind] of COLUMNS) {
    if (typeof kind === 'object') {
      def[name] = { repeated: true, fields: structFieldDefs(kind, text) };
      continue;
    }
    switch (kind) {
      case 'bytes':
        if (includeImageBytes)
          def[name] = { type: 'BYTE_ARRAY', optional: true, compression: PARQUET_COMPRESSION, statistics: false };
        break;
      case 'int':
        def[name] = { type: 'INT64', compression: PARQUET_COMPRESSION };
        break;
      case 'intList':
        def[name] = { type: 'INT64', repeated: true, compression: PARQUET_COMPRESSION };
        break;
      case 'str':
        def[name] = utf8(name);
        break;
      case 'list':
        def[name] = utf8(name, { repeated: true });
        break;
      case 'nullable':
        def[name] = utf8(name, { optional: true });
        break;
      case 'imageSet':
        def[name] = {
          repeated: true,
          fields: {
            image_id: text(),
            image_file_name: text(),
            image_path: text(),
            caption: text(),
            hash: text({ optional: true }),
          },
        };
        break;
      case 'imageContext':
        def[name] = { repeated: true, fields: { image_id: text(), paragraphs: text({ repeated: true }) } };
        break;
    }
  }
  return new ParquetSchema(def as ConstructorParameters<typeof ParquetSchema>[0]);
}

function structFieldDefs(kind: StructList, text: (extra?: FieldDef) => FieldDef): Record<string, FieldDef> {
  const fields: Record<string, FieldDef> = {};
  for (const [field, type] of Object.entries(kind.struct)) {
    if (type === 'bool') fields[field] = { type: 'BOOLEAN', compression: PARQUET_COMPRESSION };
    else if (type === 'strs') fields[field] = text({ repeated: true });
    else fields[field] = text(type === 'str?' ? { optional: true } : {});
  }
  return fields;
}

/** parquetjs takes an absent field for null: a struct's null fields are left out, and come back as null. */
function structToRecord(entries: unknown, kind: StructList): Record<string, unknown>[] {
  return (entries as Record<string, unknown>[]).map((e) => {
    const out: Record<string, unknown> = {};
    for (const field of Object.keys(kind.struct))
      if (e[field] !== null && e[field] !== undefined) out[field] = e[field];
    return out;
  });
}

function structFromRecord(entries: unknown, kind: StructList): Record<string, unknown>[] {
  return ((entries ?? []) as Record<string, unknown>[]).map((e) => {
    const out: Record<string, unknown> = {};
    for (const [field, type] of Object.entries(kind.struct)) {
      const v = e[field];
      out[field] = type === 'strs' ? (v ?? []) : v === undefined ? null : v;
    }
    return out;
  });
}

export interface ParquetWriteOptions {
  /** Add the `image` column with the jpg bytes (rows without `image` get null). Default false. */
  includeImageBytes?: boolean;
  /** Most rows per row group; default 1000. */
  rowGroupSize?: number;
  /**
   * Most bytes of values (image bytes, strings, 8 per integer) per row group, before compression; default
   * 128 MiB. A group always holds at least one row. Bounds writer and reader memory when images are included.
   */
  rowGroupBytes?: number;
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
    if (typeof kind === 'object') {
      rec[name] = structToRecord(v, kind);
      continue;
    }
    switch (kind) {
      case 'bytes':
        if (includeImageBytes && v !== undefined) rec[name] = v;
        break;
      case 'int':
        rec[name] = BigInt(v as number);
        break;
      case 'intList':
        rec[name] = (v as number[]).map((x) => BigInt(x));
        break;
      case 'nullable':
        if (v !== null) rec[name] = v;
        break;
      case 'imageSet':
        rec[name] = (v as ImageSetEntry[]).map((e) =>
          e.hash === null
            ? { image_id: e.image_id, image_file_name: e.image_file_name, image_path: e.image_path, caption: e.caption }
            : e,
        );
        break;
      default:
        rec[name] = v;
    }
  }
  return rec;
}

/** The value bytes a row adds to its row group: what rowGroupBytes counts. */
export function rowValueBytes(row: SampleRow, includeImageBytes: boolean): number {
  let n = includeImageBytes && row.image ? row.image.length : 0;
  const add = (v: unknown): void => {
    if (typeof v === 'string') n += Buffer.byteLength(v, 'utf8');
    else if (typeof v === 'number') n += 8;
    else if (Array.isArray(v)) v.forEach(add);
    else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) Object.values(v).forEach(add);
  };
  for (const [name, kind] of COLUMNS) if (kind !== 'bytes') add(row[name]);
  return n;
}

/** Row counts of the row groups: at most `maxRows` rows and (unless a single row is bigger) `maxBytes` bytes each. */
export function planRowGroups(rowBytes: readonly number[], maxRows: number, maxBytes: number): number[] {
  const groups: number[] = [];
  let rows = 0;
  let bytes = 0;
  for (const b of rowBytes) {
    if (rows > 0 && (rows >= maxRows || bytes + b > maxBytes)) {
      groups.push(rows);
      rows = 0;
      bytes = 0;
    }
    rows++;
    bytes += b;
  }
  if (rows > 0) groups.push(rows);
  return groups;
}

/** Checks one row before it is written: the schema, and its image bytes against its size and sha256. */
function checkRow(row: SampleRow, i: number, includeImageBytes: boolean): void {
  const parsed = SampleRowSchema.safeParse(row);
  if (!parsed.success) throw new Error(`sample row ${i} (${String(row?.key)}) is invalid: ${parsed.error.message}`);
  if (includeImageBytes && row.image) {
    if (row.image.length !== row.image_bytes_size)
      throw new Error(
        `sample ${row.key}: image has ${row.image.length} bytes, image_bytes_size says ${row.image_bytes_size}`,
      );
    const sha = createHash('sha256').update(row.image).digest('hex');
    if (sha !== row.image_sha256) throw new Error(`sample ${row.key}: image bytes do not match image_sha256`);
  }
  if (row.image_size[0] !== row.image_width || row.image_size[1] !== row.image_height) {
    throw new Error(
      `sample ${row.key}: image_size ${JSON.stringify(row.image_size)} is not [image_width, image_height]`,
    );
  }
}

/**
 * Writes `rows` (an array, or any iterable or async iterable, consumed once and in order) as one parquet file.
 *
 * Streaming: each row is checked and handed to parquetjs as it comes, and a row group goes to the file as soon as
 * it is full, so the writer holds one row group, never the whole file (a unit of 10,000 rows and one of 10 take the
 * same memory). The groups are those planRowGroups gives for the same rows. A bad row fails the write and leaves
 * no file (the temporary file goes), though rows before it were already encoded.
 */
export async function writeSamplesParquet(
  finalPath: string,
  rows: Iterable<SampleRow> | AsyncIterable<SampleRow>,
  opts: ParquetWriteOptions = {},
): Promise<WrittenParquet> {
  const includeImageBytes = opts.includeImageBytes ?? false;
  const rowGroupSize = opts.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
  const rowGroupBytes = opts.rowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES;
  if (!Number.isInteger(rowGroupSize) || rowGroupSize < 1)
    throw new RangeError(`rowGroupSize must be a positive integer, got ${rowGroupSize}`);
  if (!Number.isInteger(rowGroupBytes) || rowGroupBytes < 1)
    throw new RangeError(`rowGroupBytes must be a positive integer, got ${rowGroupBytes}`);

  await fsp.mkdir(path.dirname(finalPath), { recursive: true });
  // A parquet file has one writer: what an earlier attempt left behind (killed before its rename) goes now.
  await removeStalePartials(finalPath);
  const partialPath = partialPathOf(finalPath);
  const out = createWriteStream(partialPath);
  try {
    await new Promise<void>((resolve, reject) => out.once('open', () => resolve()).once('error', reject));
    // Data page v1 and no page index: the most widely readable layout, and smaller footers.
    const writer = await ParquetWriter.openStream(sampleParquetSchema(includeImageBytes), out, {
      rowGroupSize,
      useDataPageV2: false,
      pageIndex: false,
    });
    // parquetjs flushes a row group inside appendRow once it holds rowGroupSize rows. Whether a row ends its group
    // (planRowGroups' rule: the group is full, or the next row's bytes would take it past rowGroupBytes) is known
    // when the next row comes, so each row is appended one row late, with the group size set to end it or not.
    let pending: SampleRow | null = null;
    let groupRows = 0;
    let groupBytes = 0;
    let count = 0;
    for await (const row of rows) {
      checkRow(row, count++, includeImageBytes);
      const b = rowValueBytes(row, includeImageBytes);
      if (pending) {
        const ends = groupRows >= rowGroupSize || groupBytes + b > rowGroupBytes;
        writer.setRowGroupSize(ends ? groupRows : Number.MAX_SAFE_INTEGER);
        await writer.appendRow(toRecord(pending, includeImageBytes));
        if (ends) [groupRows, groupBytes] = [0, 0];
      }
      pending = row;
      groupRows++;
      groupBytes += b;
    }
    // The last group is written by close().
    writer.setRowGroupSize(Number.MAX_SAFE_INTEGER);
    if (pending) await writer.appendRow(toRecord(pending, includeImageBytes));
    await writer.close();
    const fh = await fsp.open(partialPath, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const { bytes, sha256 } = await hashFile(partialPath);
    await fsp.rename(partialPath, finalPath);
    return { path: finalPath, rows: count, bytes, sha256 };
  } catch (err) {
    // Ended, not destroyed: parquetjs does not await every write it starts (its header, for one), and a write still
    // queued on a destroyed stream fails where nobody listens (an unhandled rejection that takes the worker down).
    if (!out.closed)
      await new Promise<void>((resolve) => {
        out.once('close', () => resolve()).once('error', () => resolve());
        out.end();
      });
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

function fromRecord(r: Record<string, unknown>): SampleRow {
  const row: Record<string, unknown> = {};
  const list = <T>(v: unknown): T[] => (v === undefined || v === null ? [] : (v as T[]));
  for (const [name, kind] of COLUMNS) {
    const v = r[name];
    if (typeof kind === 'object') {
      row[name] = structFromRecord(v, kind);
      continue;
    }
    switch (kind) {
      case 'bytes':
        if (v !== undefined && v !== null) row[name] = Buffer.from(v as Buffer);
        break;
      case 'int':
        row[name] = Number(v);
        break;
      case 'intList':
        row[name] = list<bigint>(v).map(Number);
        break;
      case 'list':
        row[name] = list<string>(v);
        break;
      case 'nullable':
        row[name] = v === undefined ? null : v;
        break;
      case 'imageSet':
        row[name] = list<Record<string, unknown>>(v).map((e) => ({
          image_id: e.image_id,
          image_file_name: e.image_file_name,
          image_path: e.image_path,
          caption: e.caption,
          hash: e.hash ?? null,
        }));
        break;
      case 'imageContext':
        row[name] = list<Record<string, unknown>>(v).map((e) => ({
          image_id: e.image_id,
          paragraphs: list<string>(e.paragraphs),
        }));
        break;
      default:
        row[name] = v;
    }
  }
  return row as unknown as SampleRow;
}

/** Streams the rows of a file written by writeSamplesParquet, one row group in memory at a time. */
export async function* iterateSamplesParquet(file: string): AsyncGenerator<SampleRow> {
  const reader = await ParquetReader.openFile(file);
  try {
    const cursor = reader.getCursor();
    for (let rec = await cursor.next(); rec; rec = await cursor.next())
      yield fromRecord(rec as Record<string, unknown>);
  } finally {
    await reader.close();
  }
}

/** Reads a file written by writeSamplesParquet back into SampleRows (for checks and tests). */
export async function readSamplesParquet(file: string): Promise<SampleRow[]> {
  const rows: SampleRow[] = [];
  for await (const row of iterateSamplesParquet(file)) rows.push(row);
  return rows;
}

const PUBLISHED = new Set<string>(PUBLISHED_KEYS);

/**
 * The row of a published json and the row's own fields, keys in column order (the samples.ndjson line), with
 * image_context as entries in the object's key order.
 */
export function sampleRowOf(json: PublishedSampleJson, fields: SampleRowFields): SampleRow {
  const row: Record<string, unknown> = {};
  for (const [name] of COLUMNS) {
    if (name === 'image_context')
      row[name] = Object.entries(json.image_context).map(([image_id, paragraphs]) => ({ image_id, paragraphs }));
    else if (PUBLISHED.has(name)) row[name] = json[name as keyof PublishedSampleJson];
    else if (fields[name as keyof SampleRowFields] !== undefined) row[name] = fields[name as keyof SampleRowFields];
    else if (name === 'caption_mathml' || name === 'article_mathml' || name === 'figure_role')
      row[name] = emptyParquetOnlyColumns()[name];
  }
  return row as unknown as SampleRow;
}

/** The published json object of a row: the 25 keys in the published order, image_context back as an object. */
export function publishedJsonOf(row: SampleRow): PublishedSampleJson {
  const json: Record<string, unknown> = {};
  for (const k of PUBLISHED_KEYS) json[k] = row[k];
  const context: Record<string, string[]> = {};
  for (const e of row.image_context) context[e.image_id] = e.paragraphs;
  json.image_context = context;
  return json as unknown as PublishedSampleJson;
}

/** The article metadata columns beyond the json (issue 15), with their types as pyarrow names them. */
export const ARTICLE_METADATA_COLUMNS = [
  'article_authors',
  'article_chemicals',
  'article_pubmed_article_date',
  'article_pubmed_history',
] as const satisfies readonly (keyof PubmedColumns)[];

/**
 * Every column that is not a json key and comes after the PubMed ids, in the file's order: the article metadata,
 * the raw MathML and the figure's role ('figure' or 'graphical-abstract'). The dataset card lists them.
 */
export const PARQUET_ONLY_COLUMNS = [
  ...ARTICLE_METADATA_COLUMNS,
  'caption_mathml',
  'article_mathml',
  'figure_role',
] as const satisfies readonly Column[];

/** "list<struct<name: string, surname: string (nullable), ...>>": the card and docs spelling of a column's type. */
export function articleMetadataColumnType(name: (typeof PARQUET_ONLY_COLUMNS)[number]): string {
  const kind = COLUMN_KINDS[name];
  if (kind === 'str') return 'string';
  if (kind === 'list') return 'list<string>';
  if (typeof kind !== 'object') return 'string (nullable)';
  const fields = Object.entries(kind.struct).map(
    ([field, type]) =>
      `${field}: ${type === 'bool' ? 'bool' : type === 'strs' ? 'list<string>' : type === 'str?' ? 'string (nullable)' : 'string'}`,
  );
  return `list<struct<${fields.join(', ')}>>`;
}
