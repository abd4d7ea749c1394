import { strict as assert } from 'node:assert';
import { parse } from 'yaml';
import { datasetCard } from '../activities/publish/card';
import type { ReleaseSummary } from '../activities/publish/finalize';
import { PUBLISHED_KEYS, publishedArticleDate } from '../activities/shard/sample-json';

function summary(over: Partial<ReleaseSummary> = {}): ReleaseSummary {
  return {
    releaseId: '2026-sample',
    inventoryManifest: 'inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json',
    articles: { planned: 25, parsed: 24, excludedAtPlan: { 'superseded-version': 2, retracted: 1 } },
    figures: 1312,
    samples: 1234,
    rejected: 78,
    rejectedByReason: { 'media:not-found': 3, 'images:corrupt-image': 5, 'parse:invalid-xml': 1 },
    subsets: {
      commercial: { shards: 2, samples: 1000, articles: 15, bytes: 123456, licenses: {} },
      noncommercial: { shards: 0, samples: 0, articles: 0, bytes: 0, licenses: {} },
      other: { shards: 1, samples: 234, articles: 9, bytes: 6543, licenses: {} },
    },
    warnings: 0,
    enrichment: { pmids: 22, returned: 21, notReturned: 1, failedBatches: 0, withoutPmid: 0 },
    annotation: { provider: 'cpu', taxonomyVersion: 'bootstrap-v0' },
    ...over,
  };
}

function frontMatter(card: string): Record<string, unknown> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(card);
  assert.ok(m, 'the card starts with a --- front matter block');
  return parse(m[1]!) as Record<string, unknown>;
}

describe('datasetCard', () => {
  const card = datasetCard(summary(), { repoId: 'local/biomedica-sample', snapshot: '2026-11-01' });
  const fm = frontMatter(card);

  it('has YAML front matter the yaml package parses, with license and task categories', () => {
    assert.equal(fm.license, 'other');
    assert.equal(fm.license_name, 'pmc-open-access-subset');
    assert.equal(fm.license_link, 'https://pmc.ncbi.nlm.nih.gov/tools/openftlist/');
    assert.equal(fm.pretty_name, 'BIOMEDICA-style PMC figure-caption release 2026-sample');
    assert.deepEqual(fm.language, ['en']);
    assert.deepEqual(fm.task_categories, ['image-to-text', 'zero-shot-image-classification']);
    assert.deepEqual(fm.tags, ['biology', 'medical', 'webdataset']);
  });

  it('declares one webdataset config per subset that has shards, with its data_files and features', () => {
    assert.deepEqual(fm.configs, [
      { config_name: 'commercial', data_files: [{ split: 'train', path: 'commercial/*.tar' }] },
      { config_name: 'other', data_files: [{ split: 'train', path: 'other/*.tar' }] },
    ]);
    assert.deepEqual(
      (fm.dataset_info as { config_name: string }[]).map((i) => i.config_name),
      ['commercial', 'other'],
    );
    const all = frontMatter(
      datasetCard(
        summary({
          subsets: {
            commercial: { shards: 1, samples: 1, articles: 1, bytes: 1, licenses: {} },
            noncommercial: { shards: 1, samples: 1, articles: 1, bytes: 1, licenses: {} },
            other: { shards: 1, samples: 1, articles: 1, bytes: 1, licenses: {} },
          },
        }),
        { repoId: 'r', snapshot: 's' },
      ),
    );
    assert.deepEqual(
      (all.configs as { config_name: string }[]).map((c) => c.config_name),
      ['commercial', 'noncommercial', 'other'],
    );
  });

  it('puts the sample count in its Hub size category', () => {
    assert.deepEqual(fm.size_categories, ['1K<n<10K']);
    const cases: [number, string][] = [
      [0, 'n<1K'],
      [999, 'n<1K'],
      [1_000, '1K<n<10K'],
      [9_999, '1K<n<10K'],
      [10_000, '10K<n<100K'],
      [100_000, '100K<n<1M'],
      [1_000_000, '1M<n<10M'],
      [24_000_000, '10M<n<100M'],
      [100_000_000, '100M<n<1B'],
    ];
    for (const [n, cat] of cases) {
      assert.deepEqual(
        frontMatter(datasetCard(summary({ samples: n }), { repoId: 'r', snapshot: 's' })).size_categories,
        [cat],
        String(n),
      );
    }
  });

  it('states the provenance numbers in the body', () => {
    const body = card.slice(card.indexOf('\n---\n', 4) + 5);
    assert.ok(body.includes('# 2026-sample'));
    assert.ok(body.includes('Repository: `local/biomedica-sample`'));
    assert.ok(
      body.includes(
        '- Source: PMC Cloud Service inventory `inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json` (snapshot 2026-11-01).',
      ),
    );
    assert.ok(
      body.includes(
        '- Articles planned: 25; parsed: 24; left out at planning: {"superseded-version":2,"retracted":1}.',
      ),
    );
    assert.ok(body.includes('- Figures: 1312; samples: 1234; figures rejected: 78.'));
    assert.ok(body.includes('- Taxonomy: bootstrap-v0 (embeddings on cpu).'));
    assert.ok(body.includes('- PubMed enrichment: 21 of 22 PMIDs returned.'));
    assert.ok(
      body.includes('| commercial | 2 | 15 | 1000 | CC0, CC BY, CC BY-SA, CC BY-ND (commercial use allowed) |'),
    );
    assert.ok(body.includes('| other | 1 | 9 | 234 |'));
    assert.ok(!body.includes('| noncommercial |'), 'no row for a subset without shards');
    // Rejections sorted by stage:reason.
    assert.ok(body.includes('| images:corrupt-image | 5 |\n| media:not-found | 3 |\n| parse:invalid-xml | 1 |'));
  });

  it('says "none" when nothing was rejected and "none"/"n/a" without annotation', () => {
    const c = datasetCard(summary({ rejectedByReason: {}, annotation: { provider: null, taxonomyVersion: null } }), {
      repoId: 'r',
      snapshot: 's',
    });
    assert.ok(c.includes('| none | 0 |'));
    assert.ok(c.includes('- Taxonomy: none (embeddings on n/a).'));
  });

  it('is a pure function of its input', () => {
    assert.equal(datasetCard(summary(), { repoId: 'local/biomedica-sample', snapshot: '2026-11-01' }), card);
  });
});

describe('publishedArticleDate', () => {
  const utcSeconds = (y: number, m: number, d: number, h: number) => String(Date.UTC(y, m - 1, d, h) / 1000);

  it('is local midnight in Los Angeles: PDT in October', () => {
    assert.equal(publishedArticleDate('2024-10-07'), '1728284400');
    assert.equal(publishedArticleDate('2024-10-07'), utcSeconds(2024, 10, 7, 7));
  });

  it('is local midnight in Los Angeles: PST in January', () => {
    assert.equal(publishedArticleDate('2020-01-24'), utcSeconds(2020, 1, 24, 8)); // 2020-01-24T08:00:00Z
    assert.equal(publishedArticleDate('2020-01-24'), '1579852800');
  });

  it('takes day 1 for month precision and January 1 for year precision', () => {
    assert.equal(publishedArticleDate('2007-02'), utcSeconds(2007, 2, 1, 8));
    assert.equal(publishedArticleDate('2007'), utcSeconds(2007, 1, 1, 8));
  });

  it('gets the offset right on the days the clocks change (the change is at 02:00, after midnight)', () => {
    assert.equal(publishedArticleDate('2024-03-10'), utcSeconds(2024, 3, 10, 8)); // still PST at midnight
    assert.equal(publishedArticleDate('2024-03-11'), utcSeconds(2024, 3, 11, 7));
    assert.equal(publishedArticleDate('2024-11-03'), utcSeconds(2024, 11, 3, 7)); // still PDT at midnight
    assert.equal(publishedArticleDate('2024-11-04'), utcSeconds(2024, 11, 4, 8));
    // Before 2007 DST ran from the first Sunday of April to the last Sunday of October.
    assert.equal(publishedArticleDate('2006-04-01'), utcSeconds(2006, 4, 1, 8));
    assert.equal(publishedArticleDate('2006-10-29'), utcSeconds(2006, 10, 29, 7));
  });

  it('handles dates before 1970 and ignores a time part', () => {
    assert.equal(publishedArticleDate('1969-12-31'), '-57600');
    assert.equal(publishedArticleDate('2024-10-07T23:59:59Z'), '1728284400');
  });

  it('is "" without a usable date', () => {
    assert.equal(publishedArticleDate(null), '');
    assert.equal(publishedArticleDate(''), '');
    assert.equal(publishedArticleDate('Spring 2020'), '');
  });
});

describe('PUBLISHED_KEYS', () => {
  it('lists the 25 unique keys of docs/dataset-format.md in its order', () => {
    // The §6 table, rows 1 to 25 (rows 5-6, 7-8, 12-16, 17-20 and 23-25 spelled out).
    assert.deepEqual(PUBLISHED_KEYS, [
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
    ]);
    assert.equal(new Set(PUBLISHED_KEYS).size, 25);
  });
});
