import { parseCsvLine } from '../plan/plan';

/**
 * One row of the legacy file list (docs/sources.md):
 * - `oa_file_list.csv`: header `File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License`
 *   (a `Retracted` column, as in the old cloud file lists, is honoured when present); excerpts without the header
 *   are read in that column order;
 * - `oa_file_list.txt` (older): a first line holding the list's date, then tab-separated
 *   `File, Article Citation, Accession ID, PMID:<n>, License` (no Last Updated).
 */
export interface LegacyListRow {
  file: string;
  citation: string | null;
  pmcid: string;
  updated: string | null;
  pmid: string | null;
  license: string | null;
  retracted: boolean;
}

export type LegacyListFormat = 'csv' | 'txt';

export function listFormatOf(fileList: string): LegacyListFormat {
  return /\.txt$/i.test(fileList) ? 'txt' : 'csv';
}

/** A package path as the list gives it: relative, no `..`, `oa_package/xx/yy/PMC<id>.tar.gz` or similar. */
const PACKAGE_PATH = /^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._\-/]+\.tar\.gz$/;

const CSV_COLUMNS: Record<string, keyof LegacyListRow | 'retracted'> = {
  file: 'file',
  'article citation': 'citation',
  'accession id': 'pmcid',
  accessionid: 'pmcid',
  pmid: 'pmid',
  license: 'license',
  retracted: 'retracted',
};

function columnOf(header: string): keyof LegacyListRow | null {
  const h = header.trim().toLowerCase();
  if (h.startsWith('last updated')) return 'updated';
  return (CSV_COLUMNS[h] as keyof LegacyListRow | undefined) ?? null;
}

function pmidOf(raw: string | undefined): string | null {
  const v = (raw ?? '').trim().replace(/^PMID:\s*/i, '');
  return /^\d+$/.test(v) ? v : null;
}

function textOrNull(raw: string | undefined): string | null {
  const v = (raw ?? '').trim();
  return v === '' ? null : v;
}

/** Parses a file list line by line; keeps the header (csv) or skips the date line (txt). */
export class FileListParser {
  private columns: (keyof LegacyListRow | null)[] | null = null;
  private first = true;
  listDate: string | null = null;
  constructor(readonly format: LegacyListFormat) {}

  /** A row, an error for a line that is no row, or null for a header, date or blank line. */
  line(text: string): LegacyListRow | { error: string } | null {
    if (!text.trim()) return null;
    const first = this.first;
    this.first = false;
    if (this.format === 'txt') {
      if (first && !text.includes('\t')) {
        this.listDate = text.trim();
        return null;
      }
      const cells = text.split('\t');
      if (cells.length < 4) return { error: `expected 4 or 5 tab-separated cells, got ${cells.length}` };
      return this.row({ file: cells[0], citation: cells[1], pmcid: cells[2], pmid: cells[3], license: cells[4] });
    }
    const cells = parseCsvLine(text);
    if (first && cells[0]?.trim().toLowerCase() === 'file') {
      this.columns = cells.map(columnOf);
      return null;
    }
    const cols = this.columns ?? (['file', 'citation', 'pmcid', 'updated', 'pmid', 'license'] as const);
    const get: Partial<Record<keyof LegacyListRow, string>> = {};
    cols.forEach((c, i) => {
      if (c) get[c] = cells[i];
    });
    if (cells.length < 3) return { error: `expected at least 3 cells, got ${cells.length}` };
    return this.row(get as Record<string, string | undefined>);
  }

  private row(c: Record<string, string | undefined>): LegacyListRow | { error: string } {
    const file = (c.file ?? '').trim();
    const pmcid = (c.pmcid ?? '').trim();
    if (!PACKAGE_PATH.test(file)) return { error: `not a package path: ${JSON.stringify(file.slice(0, 200))}` };
    if (!/^PMC\d+$/.test(pmcid)) return { error: `not a PMCID: ${JSON.stringify(pmcid.slice(0, 50))}` };
    return {
      file,
      citation: textOrNull(c.citation),
      pmcid,
      updated: textOrNull(c.updated),
      pmid: pmidOf(c.pmid),
      license: textOrNull(c.license),
      retracted: /^(yes|y|true|1)$/i.test((c.retracted ?? '').trim()),
    };
  }
}
