import type { PipelineType } from '@huggingface/hub';
import type { ApiDatasetMetadata } from '@huggingface/hub/dist/src/types/api/api-dataset';
import { stringify as stringifyYaml } from 'yaml';
import { SUBSETS, type Subset } from '../../config/release';
import { PARQUET_ONLY_COLUMNS, articleMetadataColumnType } from '../parquet/writer';
import { PUBLISHED_KEYS, type PublishedSampleJson } from '../shard/sample-json';
import type { ReleaseSummary } from './finalize';

/**
 * The Hub's size categories (huggingface_hub DatasetCardData / datasets' size_categories), by sample count.
 * Upper bounds are exclusive: 1,000 samples is 1K<n<10K, as the Hub's own parser has it.
 */
export const HUB_SIZE_CATEGORIES: readonly [number, string][] = [
  [1_000, 'n<1K'],
  [10_000, '1K<n<10K'],
  [100_000, '10K<n<100K'],
  [1_000_000, '100K<n<1M'],
  [10_000_000, '1M<n<10M'],
  [100_000_000, '10M<n<100M'],
  [1_000_000_000, '100M<n<1B'],
  [10_000_000_000, '1B<n<10B'],
  [100_000_000_000, '10B<n<100B'],
  [1_000_000_000_000, '100B<n<1T'],
];

export function sizeCategory(n: number): string {
  for (const [below, cat] of HUB_SIZE_CATEGORIES) if (n < below) return cat;
  return 'n>1T';
}

/** Task categories of the card: ids of the Hub's task list (@huggingface/tasks PIPELINE_DATA). */
export const CARD_TASK_CATEGORIES = [
  'image-to-text',
  'zero-shot-image-classification',
] as const satisfies readonly PipelineType[];

/** PMC's license codes of each subset (docs/sources.md) and what they allow. */
const LICENSE_TEXT: Record<Subset, string> = {
  commercial: 'CC0, CC BY, CC BY-SA, CC BY-ND (commercial use allowed)',
  noncommercial: 'CC BY-NC, CC BY-NC-SA, CC BY-NC-ND (non-commercial use only)',
  other: 'no machine-readable Creative Commons license, no license, or a custom license (check each article)',
};

function licenseCounts(counts: Record<string, number>): string {
  if (Object.keys(counts).length === 0) return 'n/a';
  return Object.entries(counts)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([code, n]) => `${code === 'none' ? 'no license code' : code}: ${n}`)
    .join(', ');
}

/**
 * The dataset card README.md: YAML front matter the Hub validates and reads (license, task and size categories,
 * one webdataset and one parquet config per subset with shards) and the release's provenance. The checks the Hub
 * applies, and which of them the tests repeat, are in docs/publishing.md.
 *
 * License: PMC's codes carry no version ("CC BY"), and the subsets mix several licenses, so the repo-level
 * `license` is `other` with `license_name` / `license_link` (the Hub's rule for a license outside its list), and
 * `license_details` states the licenses of each subset; each sample's json carries its article's own license.
 */
/**
 * The card's front matter, typed against the installed Hub client's dataset metadata shape (ApiDatasetMetadata)
 * with its license and task ids; docs/publishing.md lists the rules checked (card-rules.ts) and their sources.
 */
/** The front matter: the Hub client's dataset metadata, plus `dataset_info` (features), which that type leaves out. */
export type CardMetadata = ApiDatasetMetadata & {
  dataset_info: { config_name: string; features: typeof SAMPLE_FEATURES }[];
};

export function cardMetadata(summary: ReleaseSummary): CardMetadata {
  const present = SUBSETS.filter((s) => summary.subsets[s].shards > 0);
  const details = present.map((s) => `${s}: ${LICENSE_TEXT[s]}`).join('; ');
  return {
    license: 'other',
    license_name: 'pmc-open-access-subset',
    license_link: 'https://pmc.ncbi.nlm.nih.gov/tools/openftlist/',
    license_details: `Per subset (config): ${details || 'none'}. Each sample's json has its article's license in article_license.`,
    pretty_name: `BIOMEDICA-style PMC figure-caption release ${summary.releaseId}`,
    language: ['en'],
    task_categories: [...CARD_TASK_CATEGORIES],
    tags: ['biology', 'medical', 'webdataset'],
    size_categories: [sizeCategory(summary.samples)],
    // datasets (and the Hub's viewer) picks one builder for a whole repo, from the first config's files: every
    // config is a WebDataset one, and the metadata-only parquet files are read with the parquet builder by path.
    configs: present.map((s) => ({ config_name: s, data_files: [{ split: 'train', path: `${s}/*.tar` }] })),
    // Declared features: without them datasets infers a schema from the first samples, and a list that is empty
    // there (no MeSH terms) becomes null and fails on the next sample that has one.
    dataset_info: present.map((s) => ({ config_name: s, features: SAMPLE_FEATURES })),
  };
}

const str = (name: string) => ({ name, dtype: 'string' });

/**
 * The json member's feature of each published key that is not a plain string (the parquet writer's column types,
 * in datasets' YAML spelling). Typed by key, so a key renamed in PublishedSampleJson is caught here.
 */
const JSON_FEATURES: Partial<Record<keyof PublishedSampleJson, object>> = {
  image_primary_label: { list: 'string' },
  image_secondary_label: { list: 'string' },
  image_size: { list: 'int64' },
  image_set: { list: ['image_id', 'image_file_name', 'image_path', 'caption', 'hash'].map(str) },
  image_context: { dtype: 'json' },
  article_mesh_terms: { list: 'string' },
  article_keywords: { list: 'string' },
  article_reference_ids: { list: 'string' },
  article_reference_count: { dtype: 'int64' },
  article_reference_list: { list: 'string' },
  article_subject: { list: 'string' },
};

/** A WebDataset sample's features as datasets writes them in YAML (DatasetInfo._to_yaml_dict, datasets 5). */
export const SAMPLE_FEATURES = [
  { name: 'jpg', dtype: 'image' },
  { name: 'json', struct: PUBLISHED_KEYS.map((name) => ({ name, ...(JSON_FEATURES[name] ?? { dtype: 'string' }) })) },
  str('txt'),
  str('__key__'),
  str('__url__'),
];

/**
 * The dataset card README.md: YAML front matter the Hub validates and reads (license, task and size categories,
 * one webdataset and one parquet config per subset with shards) and the release's provenance.
 *
 * License: PMC's codes carry no version ("CC BY"), and the subsets mix several licenses, so the repo-level
 * `license` is `other` with `license_name` / `license_link` (the Hub's rule for a license outside its list), and
 * `license_details` states the licenses of each subset; each sample's json carries its article's own license.
 */
export function datasetCard(summary: ReleaseSummary, opts: { repoId: string; snapshot: string }): string {
  const present = SUBSETS.filter((s) => summary.subsets[s].shards > 0);
  const frontMatter = stringifyYaml(cardMetadata(summary), { indentSeq: false, lineWidth: 0 }).trimEnd();
  const rows = present.map(
    (s) =>
      `| ${s} | ${summary.subsets[s].shards} | ${summary.subsets[s].articles} | ${summary.subsets[s].samples} | ${LICENSE_TEXT[s]} |`,
  );
  const licenseRows = present.map((s) => `| ${s} | ${licenseCounts(summary.subsets[s].licenses)} |`);
  const metadataRows = PARQUET_ONLY_COLUMNS.map((c) => `| \`${c}\` | ${articleMetadataColumnType(c)} |`);
  const rejected = Object.entries(summary.rejectedByReason)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `| ${k} | ${n} |`);
  return `---
${frontMatter}
---

# ${summary.releaseId}

Figure images, captions, article metadata and taxonomy labels from the PubMed Central Open Access subset,
as WebDataset shards (\`{subset}/NNNNNN.tar\`, members \`<key>.jpg\`, \`<key>.txt\`, \`<key>.json\`) and Parquet
(\`parquet/{subset}/NNNNNN.parquet\`, one file per shard, same rows in the same order). Repository: \`${opts.repoId}\`.

Configs: one per subset, reading its WebDataset shards with declared features (\`load_dataset(repo, "commercial")\`);
\`{subset}/sizes.json\` gives the samples per shard. The Parquet files hold the same rows without image bytes, for
filtering: \`load_dataset("parquet", data_files="hf://datasets/${opts.repoId}/parquet/commercial/*.parquet")\`.

Article metadata in the Parquet files only (the json keeps its ${PUBLISHED_KEYS.length} keys): authors from the article's
XML completed from PubMed (ORCID, affiliations), PubMed's chemicals and dates, the raw MathML of the formulas whose
linear text is in the caption and article text, and the figure's role (\`figure\`, or \`graphical-abstract\` for an
abstract's image when the release publishes those); docs/dataset-format.md in the release engine gives the rules.

| column | type |
| --- | --- |
${metadataRows.join('\n')}

## Provenance

- Source: PMC Cloud Service inventory \`${summary.inventoryManifest}\` (snapshot ${opts.snapshot}).
- Articles planned: ${summary.articles.planned}; parsed: ${summary.articles.parsed}; left out at planning: ${JSON.stringify(summary.articles.excludedAtPlan)}.
- Figures: ${summary.figures}; samples: ${summary.samples}; figures rejected: ${summary.rejected}.
- Taxonomy: ${summary.annotation.taxonomyVersion ?? 'none'} (embeddings on ${summary.annotation.provider ?? 'n/a'}).
- PubMed enrichment: ${summary.enrichment.returned} of ${summary.enrichment.pmids} PMIDs returned.
- Published without PubMed data: ${summary.enrichment.withoutPmid} articles without a PMID and ${summary.enrichment.notReturned} PMIDs PubMed did not return (each listed in \`metadata/enrichment.ndjson\`).

| subset | shards | articles | samples | licenses |
| --- | --- | --- | --- | --- |
${rows.join('\n')}

## Rejected samples by stage and reason

| stage:reason | count |
| --- | --- |
${rejected.join('\n') || '| none | 0 |'}

Every rejection is listed with its article, figure, stage and cause in \`metadata/quarantine.ndjson\`.

## License

Each article keeps its own license; the subset folders group them as PMC does. Use the \`commercial\`
subset for commercial work, and check \`article_license\` in each sample's json.

Planned articles per PMC license code:

| subset | articles per license code |
| --- | --- |
${licenseRows.join('\n')}
`;
}
