import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PIPELINE_DATA } from '@huggingface/tasks';
import { ReleaseInputSchema } from '../config/release';
import { cardMetadata, datasetCard, HUB_SIZE_CATEGORIES, sizeCategory } from '../activities/publish/card';
import {
  ARTICLE_METADATA_COLUMNS,
  PARQUET_ONLY_COLUMNS,
  articleMetadataColumnType,
  sampleParquetSchema,
} from '../activities/parquet/writer';
import { PUBLISHED_KEYS } from '../activities/shard/sample-json';
import {
  cardFrontMatter,
  HUB_LICENSES,
  HUB_SIZE_CATEGORY_VALUES,
  HUB_TASK_CATEGORIES,
  validateCard,
  validateCardMetadata,
} from '../activities/publish/card-rules';
import { collectReleaseFiles } from '../activities/publish/files';
import type { ReleaseSummary } from '../activities/publish/finalize';
import { buildSyntheticRelease } from '../sample/hub-standin';

function summary(over: Partial<ReleaseSummary> = {}): ReleaseSummary {
  return {
    releaseId: '2026-sample',
    inventoryManifest: 'inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json',
    articles: { planned: 25, parsed: 24, excludedAtPlan: { retracted: 1 } },
    figures: 1312,
    samples: 1234,
    rejected: 78,
    rejectedByReason: {},
    subsets: {
      commercial: { shards: 2, samples: 1000, articles: 15, bytes: 1, licenses: { 'CC BY': 12, CC0: 3 } },
      noncommercial: { shards: 1, samples: 100, articles: 2, bytes: 1, licenses: { 'CC BY-NC': 2 } },
      other: { shards: 1, samples: 134, articles: 8, bytes: 1, licenses: { none: 5, 'CC BY-NC-ND 4.0': 3 } },
    },
    warnings: 0,
    enrichment: { pmids: 22, returned: 21, notReturned: 1, failedBatches: 0, withoutPmid: 2 },
    annotation: { provider: 'cpu', taxonomyVersion: 'bootstrap-v0' },
    ...over,
  };
}

/** The License union of the installed @huggingface/hub, read from its source (types/public.ts). */
function installedLicenseIds(): string[] {
  const src = fs.readFileSync(
    path.join(path.dirname(require.resolve('@huggingface/hub')), '..', 'src', 'types', 'public.ts'),
    'utf8',
  );
  const m = /export type License =([\s\S]*?);/.exec(src);
  assert.ok(m, 'the installed @huggingface/hub still declares `export type License`');
  return [...m[1]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]!);
}

function globMatches(glob: string, p: string): boolean {
  const re = new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*/g, '\u0000')
      .replace(/\*/g, '[^/]*')
      .replace(/\u0000/g, '.*')}$`,
  );
  return re.test(p);
}

describe("the dataset card against the Hub's dataset-card metadata rules", () => {
  it('checks licenses against exactly the license ids of the installed @huggingface/hub', () => {
    assert.deepEqual([...HUB_LICENSES], installedLicenseIds());
  });

  it("checks task_categories against exactly the task ids of @huggingface/tasks (the Hub's task list)", () => {
    assert.deepEqual([...HUB_TASK_CATEGORIES], Object.keys(PIPELINE_DATA));
  });

  it("uses the Hub's size categories, with its boundaries", () => {
    assert.deepEqual([...HUB_SIZE_CATEGORY_VALUES], [...HUB_SIZE_CATEGORIES.map(([, c]) => c), 'n>1T']);
    const cases: [number, string][] = [
      [0, 'n<1K'],
      [999, 'n<1K'],
      [1_000, '1K<n<10K'],
      [24_000_000, '10M<n<100M'],
      [999_999_999, '100M<n<1B'],
      [1_000_000_000, '1B<n<10B'],
      [999_999_999_999, '100B<n<1T'],
      [1_000_000_000_000, 'n>1T'],
    ];
    for (const [n, c] of cases) assert.equal(sizeCategory(n), c, String(n));
  });

  it('every card the release writes passes the rules: all subsets, one subset, no samples, BIOMEDICA scale', () => {
    const variants: ReleaseSummary[] = [
      summary(),
      summary({
        subsets: {
          commercial: { shards: 0, samples: 0, articles: 0, bytes: 0, licenses: {} },
          noncommercial: { shards: 0, samples: 0, articles: 0, bytes: 0, licenses: {} },
          other: { shards: 1, samples: 5, articles: 1, bytes: 1, licenses: {} },
        },
      }),
      summary({ samples: 0 }),
      summary({ samples: 24_000_000, releaseId: 'release.2026_full-v1' }),
    ];
    for (const s of variants) {
      const card = datasetCard(s, { repoId: 'biomedica/pmc', snapshot: '2026-11-01' });
      assert.deepEqual(validateCard(card), [], card.slice(0, 400));
      assert.deepEqual(
        cardFrontMatter(card).metadata,
        JSON.parse(JSON.stringify(cardMetadata(s))),
        'the YAML is exactly the typed metadata',
      );
    }
  });

  it('license other with license_name and license_link, and the licenses of each subset in license_details', () => {
    const fm = cardFrontMatter(datasetCard(summary(), { repoId: 'r/r', snapshot: 's' })).metadata!;
    assert.equal(fm.license, 'other');
    assert.equal(fm.license_name, 'pmc-open-access-subset');
    assert.equal(fm.license_link, 'https://pmc.ncbi.nlm.nih.gov/tools/openftlist/');
    const details = fm.license_details as string;
    assert.match(details, /commercial: CC0, CC BY, CC BY-SA, CC BY-ND/);
    assert.match(details, /noncommercial: CC BY-NC, CC BY-NC-SA, CC BY-NC-ND/);
    assert.match(details, /other: no machine-readable Creative Commons license/);
    assert.deepEqual(fm.task_categories, ['image-to-text', 'zero-shot-image-classification']);
    assert.deepEqual(fm.size_categories, ['1K<n<10K']);
  });

  it('lists the Parquet-only article metadata columns with the types the writer gives them', () => {
    const card = datasetCard(summary(), { repoId: 'r/r', snapshot: 's' });
    assert.match(card, /the json keeps its 25 keys/);
    for (const c of PARQUET_ONLY_COLUMNS) assert.ok(card.includes(`| \`${c}\` | ${articleMetadataColumnType(c)} |`), c);
    assert.ok(card.includes('| `caption_mathml` | list<string> |'));
    assert.ok(card.includes('| `figure_role` | string |'));
    assert.ok(
      card.includes(
        '| `article_authors` | list<struct<name: string, surname: string (nullable), given_names: string (nullable), group: bool, orcid: string (nullable), corresponding: bool, affiliations: list<string>, source: string>> |',
      ),
    );
    // The same columns, in the same order, as the schema the parquet writer writes (after the PubMed ids).
    const fields = Object.keys(sampleParquetSchema(false).fields);
    assert.deepEqual(fields.slice(fields.indexOf('article_doi') + 1), [...PARQUET_ONLY_COLUMNS]);
    assert.deepEqual(PARQUET_ONLY_COLUMNS.slice(0, ARTICLE_METADATA_COLUMNS.length), [...ARTICLE_METADATA_COLUMNS]);
    assert.ok(
      !(PUBLISHED_KEYS as readonly string[]).some((k) => (PARQUET_ONLY_COLUMNS as readonly string[]).includes(k)),
    );
  });

  it('lists articles per PMC license code in the body', () => {
    const card = datasetCard(summary(), { repoId: 'r/r', snapshot: 's' });
    assert.ok(card.includes('| commercial | CC BY: 12, CC0: 3 |'));
    assert.ok(card.includes('| other | no license code: 5, CC BY-NC-ND 4.0: 3 |'));
    const old = datasetCard(
      summary({
        subsets: { ...summary().subsets, commercial: { shards: 1, samples: 1, articles: 1, bytes: 1, licenses: {} } },
      }),
      { repoId: 'r/r', snapshot: 's' },
    );
    assert.ok(old.includes('| commercial | n/a |'), 'a summary written before license counts');
  });

  it("its configs' data_files globs match exactly each subset's shards, every config declares its features", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-card-'));
    try {
      await buildSyntheticRelease(dataDir, 'c1', { shards: { commercial: 2, noncommercial: 1, other: 1 } });
      const release = ReleaseInputSchema.parse({
        releaseId: 'c1',
        dataDir,
        source: { kind: 'pmc-cloud-dir', root: '/r' },
        publish: { kind: 'hub', repoId: 'a/b' },
      });
      const { files, card } = await collectReleaseFiles(release);
      const repoPaths = files.map((f) => f.repoPath);
      const configs = cardFrontMatter(card).metadata!.configs as {
        config_name: string;
        data_files: { split: string; path: string }[];
      }[];
      // One builder per repo (datasets infers it from the first config): WebDataset configs only.
      assert.deepEqual(
        configs.map((c) => c.config_name),
        ['commercial', 'noncommercial', 'other'],
      );
      const infos = cardFrontMatter(card).metadata!.dataset_info as {
        config_name: string;
        features: { name: string }[];
      }[];
      assert.deepEqual(
        infos.map((i) => i.config_name),
        ['commercial', 'noncommercial', 'other'],
      );
      for (const i of infos)
        assert.deepEqual(
          i.features.map((f) => f.name),
          ['jpg', 'json', 'txt', '__key__', '__url__'],
        );
      for (const c of configs) {
        assert.equal(c.data_files.length, 1);
        assert.equal(c.data_files[0]!.split, 'train');
        const matched = repoPaths.filter((p) => globMatches(c.data_files[0]!.path, p));
        const expected = repoPaths.filter((p) => p.startsWith(`${c.config_name}/`) && p.endsWith('.tar'));
        assert.ok(expected.length > 0);
        assert.deepEqual(matched, expected, c.config_name);
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('the rules catch what the Hub refuses', () => {
    const good = cardFrontMatter(datasetCard(summary(), { repoId: 'r/r', snapshot: 's' })).metadata!;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ license: 'cc-by-99' }, /license "cc-by-99" is not one of the Hub's license ids/],
      [{ license: ['cc-by-4.0', 'CC BY'] }, /license "CC BY"/],
      [{ license: 'other', license_name: undefined }, /license "other" needs license_name/],
      [{ license_name: 'PMC Open Access' }, /license_name "PMC Open Access" must be an id/],
      [{ license_link: 'ftp://x' }, /license_link must be LICENSE, LICENSE.md or an http\(s\) URL/],
      [
        { task_categories: ['image-captioning'] },
        /task_categories "image-captioning" is not one of the Hub's task ids/,
      ],
      [{ size_categories: ['1K<n<10k'] }, /size_categories "1K<n<10k" is not one of/],
      [{ language: ['English'] }, /language "English" is not a language code/],
      [{ configs: [] }, /configs must be a non-empty list/],
      [
        {
          configs: [
            { config_name: 'a', data_files: [{ split: 'train', path: 'a/*.tar' }] },
            { config_name: 'a', data_files: 'b/*' },
          ],
        },
        /config_name "a" is used twice/,
      ],
      [
        { configs: [{ config_name: 'a', data_files: [{ split: 'train set', path: 'a/*.tar' }] }] },
        /split must be a split name/,
      ],
      [
        { configs: [{ config_name: 'a', data_files: [{ split: 'train', path: '/abs/*.tar' }] }] },
        /must be relative to the repo/,
      ],
      [
        { configs: [{ config_name: 'a', data_files: [{ split: 'train', path: '../up/*.tar' }] }] },
        /must be relative to the repo/,
      ],
      [
        { configs: [{ config_name: 'a', data_files: { train: 'a/*.tar' } }] },
        /data_files must be a path, a list of paths or a list of \{split, path\}/,
      ],
      [{ configs: [{ config_name: 'a' }] }, /needs data_files or data_dir/],
      [
        {
          configs: [
            { config_name: 'a', data_files: 'x', default: true },
            { config_name: 'b', data_files: 'y', default: true },
          ],
        },
        /at most one config can be the default/,
      ],
      [{ tags: 'biology' }, /tags must be a list of strings/],
    ];
    for (const [patch, re] of cases) {
      const problems = validateCardMetadata({ ...good, ...patch });
      assert.ok(
        problems.some((p) => re.test(p)),
        `${JSON.stringify(patch)} -> ${JSON.stringify(problems)}`,
      );
    }
    assert.deepEqual(validateCard('# no front matter\n'), [
      'no YAML front matter (the card must start with a --- block)',
    ]);
    assert.match(validateCard('---\nlicense: [unclosed\n---\n')[0]!, /not valid YAML/);
    assert.deepEqual(validateCard('---\n- a\n---\n'), ['the front matter is not a YAML mapping']);
    assert.deepEqual(
      validateCardMetadata({ license: 'cc-by-4.0', configs: [{ config_name: 'default', data_dir: 'data' }] }),
      [],
    );
  });
});
