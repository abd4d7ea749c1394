import { SUBSETS } from '../../config/release';
import type { ReleaseSummary } from './finalize';

function sizeCategory(n: number): string {
  if (n < 1_000) return 'n<1K';
  if (n < 10_000) return '1K<n<10K';
  if (n < 100_000) return '10K<n<100K';
  if (n < 1_000_000) return '100K<n<1M';
  if (n < 10_000_000) return '1M<n<10M';
  if (n < 100_000_000) return '10M<n<100M';
  return '100M<n<1B';
}

const LICENSE_TEXT: Record<string, string> = {
  commercial: 'CC0, CC BY, CC BY-SA, CC BY-ND (commercial use allowed)',
  noncommercial: 'CC BY-NC, CC BY-NC-SA, CC BY-NC-ND (non-commercial use only)',
  other: 'no machine-readable Creative Commons license, no license, or a custom license (check each article)',
};

/** The dataset card: YAML front matter the Hub reads (configs per subset and view) and the release's provenance. */
export function datasetCard(summary: ReleaseSummary, opts: { repoId: string; snapshot: string }): string {
  const present = SUBSETS.filter((s) => summary.subsets[s].shards > 0);
  const yaml: string[] = [
    '---',
    'license: other',
    'license_name: pmc-open-access-subset',
    'license_link: https://pmc.ncbi.nlm.nih.gov/tools/openftlist/',
    `pretty_name: BIOMEDICA-style PMC figure-caption release ${summary.releaseId}`,
    'language:',
    '- en',
    'task_categories:',
    '- image-to-text',
    '- zero-shot-image-classification',
    'tags:',
    '- biology',
    '- medical',
    '- webdataset',
    'size_categories:',
    `- ${sizeCategory(summary.samples)}`,
    'configs:',
  ];
  for (const s of present) {
    yaml.push(`- config_name: ${s}`, '  data_files:', '  - split: train', `    path: ${s}/*.tar`);
  }
  for (const s of present) {
    yaml.push(`- config_name: ${s}_parquet`, '  data_files:', '  - split: train', `    path: parquet/${s}/*.parquet`);
  }
  yaml.push('---');
  const rows = present.map((s) => `| ${s} | ${summary.subsets[s].shards} | ${summary.subsets[s].articles} | ${summary.subsets[s].samples} | ${LICENSE_TEXT[s]} |`);
  const rejected = Object.entries(summary.rejectedByReason)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `| ${k} | ${n} |`);
  return `${yaml.join('\n')}

# ${summary.releaseId}

Figure images, captions, article metadata and taxonomy labels from the PubMed Central Open Access subset,
as WebDataset shards (\`{subset}/NNNNNN.tar\`, members \`<key>.jpg\`, \`<key>.txt\`, \`<key>.json\`) and Parquet
(\`parquet/{subset}/NNNNNN.parquet\`, one file per shard, same rows in the same order). Repository: \`${opts.repoId}\`.

## Provenance

- Source: PMC Cloud Service inventory \`${summary.inventoryManifest}\` (snapshot ${opts.snapshot}).
- Articles planned: ${summary.articles.planned}; parsed: ${summary.articles.parsed}; left out at planning: ${JSON.stringify(summary.articles.excludedAtPlan)}.
- Figures: ${summary.figures}; samples: ${summary.samples}; figures rejected: ${summary.rejected}.
- Taxonomy: ${summary.annotation.taxonomyVersion ?? 'none'} (embeddings on ${summary.annotation.provider ?? 'n/a'}).
- PubMed enrichment: ${summary.enrichment.returned} of ${summary.enrichment.pmids} PMIDs returned; ${summary.enrichment.withoutPmid} articles have no PMID (listed in \`metadata/enrichment.ndjson\`).

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
`;
}
