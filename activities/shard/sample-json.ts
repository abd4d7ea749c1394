import type { ClusterLabel } from '../annotate/taxonomy';
import type { PubmedRecord } from '../enrich/pubmed';
import type { UnitFigure } from '../parse/activity';
import type { ArticleRecord } from '../parse/records';
import type { PlannedArticle } from '../plan/plan';

/** One entry of the published `image_set`: every figure of the article. */
export interface ImageSetEntry {
  image_id: string;
  image_file_name: string;
  image_path: string;
  caption: string;
  hash: string | null;
}

/**
 * The published 25-key sample json (docs/dataset-format.md), keys in the published order.
 * Where we deviate from the original's quirks it is written down in docs/dataset-format.md.
 */
export interface PublishedSampleJson {
  image_file_name: string;
  image_cluster_id: string;
  image_hash: string;
  image_label_id: string;
  image_panel_type: string;
  image_panel_subtype: string;
  image_primary_label: string[];
  image_secondary_label: string[];
  image_size: [number, number];
  image_set: ImageSetEntry[];
  image_context: Record<string, string[]>;
  article_accession_id: string;
  article_title: string;
  article_journal: string;
  article_date: string;
  article_abstract: string;
  article_mesh_terms: string[];
  article_keywords: string[];
  article_reference_ids: string[];
  article_reference_count: number;
  article_reference_list: string[];
  article_subject: string[];
  article_citation: string;
  article_license: string;
  article_text: string;
}

export const PUBLISHED_KEYS: readonly (keyof PublishedSampleJson)[] = [
  'image_file_name',
  'image_cluster_id',
  'image_hash',
  'image_label_id',
  'image_panel_type',
  'image_panel_subtype',
  'image_primary_label',
  'image_secondary_label',
  'image_size',
  'image_set',
  'image_context',
  'article_accession_id',
  'article_title',
  'article_journal',
  'article_date',
  'article_abstract',
  'article_mesh_terms',
  'article_keywords',
  'article_reference_ids',
  'article_reference_count',
  'article_reference_list',
  'article_subject',
  'article_citation',
  'article_license',
  'article_text',
];

const LA = new Intl.DateTimeFormat('en-US', {
  timeZone: 'America/Los_Angeles',
  hourCycle: 'h23',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

/**
 * The published article_date: Unix seconds of local midnight in America/Los_Angeles (the original ran
 * Python's naive local time there), with a missing month or day taken as 1. "" when there is no date.
 */
export function publishedArticleDate(isoDate: string | null): string {
  const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?/.exec(isoDate ?? '');
  if (!m) return '';
  const [y, mo, d] = [Number(m[1]), Number(m[2] ?? 1), Number(m[3] ?? 1)];
  const wallUtc = Date.UTC(y, mo - 1, d);
  let t = wallUtc + 8 * 3600_000;
  for (let i = 0; i < 3; i++) {
    const p = Object.fromEntries(LA.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    const seenAsUtc = Date.UTC(
      Number(p.year),
      Number(p.month) - 1,
      Number(p.day),
      Number(p.hour),
      Number(p.minute),
      Number(p.second),
    );
    t = wallUtc - (seenAsUtc - t);
  }
  return String(Math.floor(t / 1000));
}

function stem(fileName: string): string {
  return fileName.replace(/\.[^.]+$/, '');
}

export interface SampleInputs {
  planned: PlannedArticle;
  record: ArticleRecord;
  figures: UnitFigure[];
  figure: UnitFigure;
  image: { width: number; height: number; sha256: string };
  imageHashes: Map<string, string>;
  label: { clusterId: number; labels: ClusterLabel };
  pubmed: PubmedRecord | null;
}

export function buildSampleJson(s: SampleInputs): PublishedSampleJson {
  const { record, pubmed, figure } = s;
  const fileName = figure.mediaFile ?? figure.href;
  const context: Record<string, string[]> = {};
  for (const [i, f] of record.figures.entries()) {
    const id = stem(s.figures[i]?.mediaFile ?? f.graphicHref);
    if (f.mentions.length > 0) context[id] = [...new Set([...(context[id] ?? []), ...f.mentions])];
  }
  return {
    image_file_name: fileName,
    image_cluster_id: stem(fileName),
    image_hash: s.image.sha256,
    image_label_id: String(s.label.clusterId),
    image_panel_type: s.label.labels.panel_type,
    image_panel_subtype: s.label.labels.panel_subtype,
    image_primary_label: [...s.label.labels.global_class],
    image_secondary_label: [...s.label.labels.local_class],
    image_size: [s.image.width, s.image.height],
    image_set: s.figures.map((f) => ({
      image_id: stem(f.mediaFile ?? f.href),
      image_file_name: f.mediaFile ?? f.href,
      image_path: f.mediaKey ?? '',
      caption: f.caption,
      hash: s.imageHashes.get(f.key) ?? null,
    })),
    image_context: context,
    article_accession_id: record.pmcid ?? s.planned.pmcid,
    article_title: record.title ?? pubmed?.title ?? '',
    article_journal: record.journal.isoAbbrev ?? record.journal.title ?? pubmed?.journal.isoAbbrev ?? '',
    article_date: publishedArticleDate(record.pubDate ?? pubmed?.pubDate ?? null),
    article_abstract: pubmed?.abstract ?? record.abstract ?? '',
    article_mesh_terms: pubmed ? pubmed.meshTerms.map((m) => m.descriptor) : [],
    article_keywords: record.keywords.length > 0 ? record.keywords : (pubmed?.keywords ?? []),
    article_reference_ids: pubmed?.referenceIds ?? [],
    article_reference_count: pubmed?.referenceCount ?? 0,
    article_reference_list: [],
    article_subject: record.subjects,
    article_citation: s.planned.citation ?? '',
    article_license: s.planned.licenseCode ?? record.license.code ?? '',
    article_text: record.fullText,
  };
}
