import { readLineBatches } from '../plan/lines';
import type { Exclusion, PlannedArticle, VersionFacts } from '../plan/plan';
import type { PlanRow } from '../plan/planner';
import { FileListParser, listFormatOf, type LegacyListRow } from './filelist';
import type { LegacyTransport } from './transport';

/**
 * The legacy packages carry no version: every article is planned as version 1, its XML as `PMC<id>.1.xml` and its
 * media as `PMC<id>.1/<member name>` (filled in by the fetch stage, which is the first to see the package).
 */
export const LEGACY_VERSION = 1;

/** The planned article of one list row; `media` stays empty until the package is read. */
export function legacyArticle(row: LegacyListRow): PlannedArticle {
  const prefix = `${row.pmcid}.${LEGACY_VERSION}`;
  return {
    pmcid: row.pmcid,
    version: LEGACY_VERSION,
    pmid: row.pmid,
    doi: null,
    citation: row.citation,
    licenseCode: row.license,
    xml: { key: `${prefix}/${prefix}.xml`, md5: null },
    media: [],
    etag: legacyEtag(row),
    package: { path: row.file, updated: row.updated },
  };
}

/** What stands for an ETag in the list: Last Updated (the .txt list has none: then only a moved package is a change). */
export function legacyEtag(row: Pick<LegacyListRow, 'updated'>): string {
  return (row.updated ?? '').replace(/[\t\r\n]/g, ' ');
}

/**
 * Streams the file list into planner rows (facts inline: the list is the metadata) and exclusions for bad lines,
 * a chunk's worth at a time.
 */
export async function* legacyPlanRows(
  transport: LegacyTransport,
  fileList: string,
  signal?: AbortSignal,
): AsyncGenerator<({ row: PlanRow } | { exclusion: Exclusion })[]> {
  const parser = new FileListParser(listFormatOf(fileList));
  const stream = await transport.open(fileList, signal);
  let lineNo = 0;
  try {
    for await (const lines of readLineBatches(stream)) {
      const out: ({ row: PlanRow } | { exclusion: Exclusion })[] = [];
      for (const line of lines) {
        lineNo++;
        const parsed = parser.line(line);
        if (!parsed) continue;
        if ('error' in parsed) {
          out.push({
            exclusion: {
              key: `${fileList}:${lineNo}`,
              pmcid: /PMC\d+/.exec(line)?.[0] ?? null,
              reason: 'bad-metadata',
              detail: parsed.error,
            },
          });
          continue;
        }
        const article = legacyArticle(parsed);
        const facts: VersionFacts = {
          key: parsed.file,
          pmcid: Number(parsed.pmcid.slice(3)),
          version: LEGACY_VERSION,
          etag: article.etag,
          oa: true, // the list is the OA subset
          retracted: parsed.retracted,
          article: parsed.retracted ? null : article,
        };
        out.push({
          row: { pmcid: facts.pmcid, version: LEGACY_VERSION, key: parsed.file, etag: facts.etag, inline: facts },
        });
      }
      if (out.length > 0) yield out;
    }
  } finally {
    stream.destroy();
  }
}
