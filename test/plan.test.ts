import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { DirPmcSource, SourceError } from '../activities/fetch/source';
import { inventoryItemOf } from '../activities/plan/activity';
import { licenseGroup } from '../activities/plan/license';
import {
  cutUnits,
  latestInventoryManifest,
  parseCsvLine,
  readInventory,
  selectArticles,
  type ArticleMetadata,
  type InventoryRow,
  type PlannedArticle,
} from '../activities/plan/plan';

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

describe('licenseGroup', () => {
  it('maps the four commercial CC codes to commercial', () => {
    for (const code of ['CC0', 'CC BY', 'CC BY-SA', 'CC BY-ND']) assert.equal(licenseGroup(code), 'commercial', code);
  });
  it('maps the three non-commercial CC codes to noncommercial', () => {
    for (const code of ['CC BY-NC', 'CC BY-NC-SA', 'CC BY-NC-ND'])
      assert.equal(licenseGroup(code), 'noncommercial', code);
  });
  it('puts TDM, null, undefined, empty and unknown codes in other', () => {
    assert.equal(licenseGroup('TDM'), 'other');
    assert.equal(licenseGroup(null), 'other');
    assert.equal(licenseGroup(undefined), 'other');
    assert.equal(licenseGroup(''), 'other');
    assert.equal(licenseGroup('NO-CC CODE'), 'other');
  });
  it('matches exactly: a wrong-case or padded spelling is other', () => {
    assert.equal(licenseGroup('cc by'), 'other');
    assert.equal(licenseGroup('CC-BY'), 'other');
    assert.equal(licenseGroup(' CC BY'), 'other');
    assert.equal(licenseGroup('cc by-nc'), 'other');
  });
});

describe('parseCsvLine', () => {
  it('splits the quoted S3 inventory row into its four cells', () => {
    assert.deepEqual(
      parseCsvLine(
        '"pmc-oa-opendata","metadata/PMC10000002.1.json","2026-01-08T11:47:59.000Z","f25d9c5f5b85338f62156faeedfc1e95"',
      ),
      [
        'pmc-oa-opendata',
        'metadata/PMC10000002.1.json',
        '2026-01-08T11:47:59.000Z',
        'f25d9c5f5b85338f62156faeedfc1e95',
      ],
    );
  });
  it('keeps commas inside quotes and turns doubled quotes into one', () => {
    assert.deepEqual(parseCsvLine('"a,b","say ""hi""",plain,""'), ['a,b', 'say "hi"', 'plain', '']);
  });
  it('keeps empty cells, including a trailing one', () => {
    assert.deepEqual(parseCsvLine('x,,y,'), ['x', '', 'y', '']);
  });
});

describe('inventoryItemOf', () => {
  it('plans metadata JSON rows, ignores other objects, and records a row whose ETag no plan line can hold', () => {
    assert.deepEqual(inventoryItemOf({ key: 'metadata/PMC10000002.1.json', etag: 'f25d9c5f' }), {
      row: { pmcid: 10000002, version: 1, key: 'metadata/PMC10000002.1.json', etag: 'f25d9c5f', inline: null },
    });
    assert.equal(inventoryItemOf({ key: 'PMC10000002.1/PMC10000002.1.xml', etag: 'x' }), null);
    for (const etag of ['ab\tcd', 'ab\r', '\nab']) {
      const item = inventoryItemOf({ key: 'metadata/PMC7.2.json', etag });
      assert.ok(item && 'exclusion' in item, JSON.stringify(etag));
      assert.deepEqual(
        [item.exclusion.key, item.exclusion.pmcid, item.exclusion.reason],
        ['metadata/PMC7.2.json', 'PMC7', 'bad-metadata'],
      );
      assert.match(item.exclusion.detail, /tab, CR or newline/);
    }
  });

  it('reads a key exactly as /^metadata\\/PMC(\\d+)\\.(\\d+)\\.json$/ and Number would', () => {
    const re = /^metadata\/PMC(\d+)\.(\d+)\.json$/;
    const keys = [
      'metadata/PMC7.2.json',
      'metadata/PMC007.02.json',
      'metadata/PMC.1.json',
      'metadata/PMC1..json',
      'metadata/PMC1.json',
      'metadata/PMC1.1.json.x',
      'metadata/PMC1.1.jsonx',
      'metadata/PMC1.1.JSON',
      'metadata/PMC1.1.json\n',
      'metadata/PMC1.1.1.json',
      'metadata/PMC\u0661.1.json',
      'metadata/PMC1/2.1.json',
      'xmetadata/PMC1.1.json',
      'metadata/PMC999999999999999.1.json',
      'metadata/PMC12345678901234567890.1.json',
      'metadata/PMC9007199254740993.1.json',
    ];
    for (const key of keys) {
      const m = re.exec(key);
      const item = inventoryItemOf({ key, etag: 'e' });
      if (!m) assert.equal(item, null, key);
      else
        assert.deepEqual(item, { row: { pmcid: Number(m[1]), version: Number(m[2]), key, etag: 'e', inline: null } });
      const bad = inventoryItemOf({ key, etag: 'e\t' });
      assert.equal(bad && 'exclusion' in bad ? bad.exclusion.pmcid : null, m ? `PMC${m[1]}` : null, key);
    }
  });
});

function meta(pmcid: string, version: number, over: Partial<ArticleMetadata> = {}): ArticleMetadata {
  const prefix = `${pmcid}.${version}`;
  return {
    pmcid,
    version,
    pmid: 1000 + version,
    doi: `10.1/${prefix}`,
    citation: `J. 2020;${prefix}.`,
    is_pmc_openaccess: true,
    is_retracted: false,
    license_code: 'CC BY',
    xml_url: `s3://pmc-oa-opendata/${prefix}/${prefix}.xml?md5=${md5(prefix)}`,
    media_urls: [],
    ...over,
  };
}
const row = (pmcid: string, version: number): InventoryRow => ({
  key: `metadata/${pmcid}.${version}.json`,
  lastModified: '2026-01-08T11:47:59.000Z',
  etag: `etag-${pmcid}.${version}`,
});
const entry = (pmcid: string, version: number, over: Partial<ArticleMetadata> = {}) => ({
  row: row(pmcid, version),
  meta: meta(pmcid, version, over),
});

describe('selectArticles', () => {
  it('keeps only is_pmc_openaccess articles and records the others as not-open-access', () => {
    const { selected, excluded } = selectArticles([entry('PMC1', 1), entry('PMC2', 1, { is_pmc_openaccess: false })]);
    assert.deepEqual(
      selected.map((a) => a.pmcid),
      ['PMC1'],
    );
    assert.deepEqual(excluded, [
      { key: 'metadata/PMC2.1.json', pmcid: 'PMC2', reason: 'not-open-access', detail: 'is_pmc_openaccess is false' },
    ]);
  });

  it('takes the newest version whatever the input order and records superseded ones', () => {
    for (const order of [
      [1, 2, 3],
      [3, 1, 2],
      [2, 3, 1],
    ]) {
      const { selected, excluded } = selectArticles(order.map((v) => entry('PMC7', v)));
      assert.equal(selected.length, 1, `order ${order}`);
      assert.equal(selected[0]!.version, 3, `order ${order}`);
      assert.equal(selected[0]!.etag, 'etag-PMC7.3');
      assert.deepEqual(
        excluded.map((e) => [e.key, e.reason]),
        [
          ['metadata/PMC7.1.json', 'superseded-version'],
          ['metadata/PMC7.2.json', 'superseded-version'],
        ],
        `order ${order}`,
      );
    }
  });

  it('drops an article whose newest version is retracted, even if an older one is not', () => {
    const { selected, excluded } = selectArticles([
      entry('PMC5', 2, { is_retracted: true }),
      entry('PMC5', 1),
      entry('PMC6', 1),
    ]);
    assert.deepEqual(
      selected.map((a) => a.pmcid),
      ['PMC6'],
    );
    assert.deepEqual(excluded, [
      { key: 'metadata/PMC5.1.json', pmcid: 'PMC5', reason: 'superseded-version', detail: 'version 1 superseded by 2' },
      { key: 'metadata/PMC5.2.json', pmcid: 'PMC5', reason: 'retracted', detail: 'is_retracted is true' },
    ]);
  });

  it('records unreadable metadata with the PMCID taken from the key', () => {
    const { selected, excluded } = selectArticles([
      { row: row('PMC3', 1), meta: null, error: 'Unexpected token < in JSON' },
      { row: { key: 'metadata/zz.json', lastModified: '', etag: 'x' }, meta: null },
      entry('PMC4', 1),
    ]);
    assert.deepEqual(
      selected.map((a) => a.pmcid),
      ['PMC4'],
    );
    assert.deepEqual(excluded, [
      {
        key: 'metadata/PMC3.1.json',
        pmcid: 'PMC3',
        reason: 'unreadable-metadata',
        detail: 'Unexpected token < in JSON',
      },
      { key: 'metadata/zz.json', pmcid: null, reason: 'unreadable-metadata', detail: 'no metadata' },
    ]);
  });

  it('sorts the selection by numeric PMCID (PMC9 before PMC10)', () => {
    const { selected } = selectArticles([
      entry('PMC100', 1),
      entry('PMC10', 1),
      entry('PMC9', 1),
      entry('PMC1', 1),
      entry('PMC11', 1),
    ]);
    assert.deepEqual(
      selected.map((a) => a.pmcid),
      ['PMC1', 'PMC9', 'PMC10', 'PMC11', 'PMC100'],
    );
  });

  it('plans the XML and only image media from the URLs, with their md5', () => {
    const { selected } = selectArticles([
      entry('PMC8', 2, {
        pmid: 31986261,
        license_code: 'CC BY-NC',
        media_urls: [
          `s3://pmc-oa-opendata/PMC8.2/gr1.jpg?md5=${md5('gr1')}`,
          `s3://pmc-oa-opendata/PMC8.2/table1.xlsx?md5=${md5('table1')}`,
          's3://pmc-oa-opendata/PMC8.2/fig2.TIF',
          `s3://pmc-oa-opendata/PMC8.2/movie.mp4?md5=${md5('movie')}`,
          `s3://pmc-oa-opendata/PMC8.2/f3.png?md5=${md5('f3').toUpperCase()}`,
        ],
      }),
    ]);
    const a = selected[0]!;
    assert.equal(a.pmid, '31986261');
    assert.equal(a.licenseCode, 'CC BY-NC');
    assert.deepEqual(a.xml, { key: 'PMC8.2/PMC8.2.xml', md5: md5('PMC8.2') });
    assert.deepEqual(a.media, [
      { key: 'PMC8.2/gr1.jpg', md5: md5('gr1') },
      { key: 'PMC8.2/fig2.TIF', md5: null },
      { key: 'PMC8.2/f3.png', md5: md5('f3').toUpperCase() },
    ]);
    assert.equal(a.refusedMedia, undefined, 'no refusedMedia field when nothing was refused');
  });

  it("refuses, with a reason each, image URLs outside the article's own folder or with a checksum that is not an md5", () => {
    const ok = md5('ok');
    const { selected, excluded } = selectArticles([
      entry('PMC9', 1, {
        media_urls: [
          `s3://pmc-oa-opendata/PMC9.1/fig1.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC9.1/../../fig2.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC9.1/%2e%2e/PMC10.1/fig3.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC10.1/fig4.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC9.1/sub/fig5.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC9.1/fig6%00.jpg?md5=${ok}`,
          `s3://pmc-oa-opendata/PMC9.1/fig7.jpg?md5=zz`,
          `s3://pmc-oa-opendata/PMC9.1/${'x'.repeat(240)}.jpg?md5=${ok}`,
          `file:///etc/fig8.jpg`,
          's3://pmc-oa-opendata/PMC9.1/../../notes.txt',
        ],
      }),
    ]);
    assert.deepEqual(excluded, []);
    const a = selected[0]!;
    assert.deepEqual(a.media, [{ key: 'PMC9.1/fig1.jpg', md5: ok }]);
    assert.deepEqual(
      a.refusedMedia!.map((r) => [r.key.slice(0, 40), r.reason]),
      [
        ['PMC9.1/../../fig2.jpg', 'unsafe-media-key'],
        ['PMC9.1/../PMC10.1/fig3.jpg', 'unsafe-media-key'],
        ['PMC10.1/fig4.jpg', 'foreign-media-key'],
        ['PMC9.1/sub/fig5.jpg', 'unsafe-media-key'],
        ['PMC9.1/fig6\u0000.jpg', 'unsafe-media-key'],
        ['PMC9.1/fig7.jpg', 'bad-media-md5'],
        [`PMC9.1/${'x'.repeat(33)}`, 'unsafe-media-key'],
        ['file:///etc/fig8.jpg', 'bad-media-url'],
      ],
    );
    for (const r of a.refusedMedia!) assert.ok(r.detail.length > 10, r.detail);
  });

  it('excludes a version whose XML URL is unusable as bad-metadata, naming why', () => {
    const { selected, excluded } = selectArticles([
      entry('PMC11', 1, { xml_url: 's3://pmc-oa-opendata/PMC12.1/PMC12.1.xml' }),
      entry('PMC13', 1, { xml_url: 's3://pmc-oa-opendata/PMC13.1/../PMC13.1.xml' }),
      entry('PMC14', 1, { xml_url: 's3://pmc-oa-opendata/PMC14.1/PMC14.1.xml?md5=nothex' }),
    ]);
    assert.deepEqual(selected, []);
    assert.deepEqual(
      excluded.map((e) => [e.pmcid, e.reason]),
      [
        ['PMC11', 'bad-metadata'],
        ['PMC13', 'bad-metadata'],
        ['PMC14', 'bad-metadata'],
      ],
    );
    assert.match(excluded[0]!.detail, /in PMC12\.1's folder, not PMC11\.1's/);
    assert.match(excluded[1]!.detail, /"\." or "\.\." segment/);
    assert.match(excluded[2]!.detail, /not 32 hex digits/);
  });
});

function planned(pmcid: string, licenseCode: string | null, images: number): PlannedArticle {
  return {
    pmcid,
    version: 1,
    pmid: null,
    doi: null,
    citation: null,
    licenseCode,
    xml: { key: `${pmcid}.1/${pmcid}.1.xml`, md5: null },
    media: Array.from({ length: images }, (_, i) => ({ key: `${pmcid}.1/f${i}.jpg`, md5: null })),
    etag: 'e',
  };
}

describe('cutUnits', () => {
  it('cuts per subset with contiguous indexes and ids <subset>-NNNNNN, in subset order', () => {
    const selected = [
      planned('PMC1', 'CC BY', 1),
      planned('PMC2', 'CC BY-NC', 1),
      planned('PMC3', 'CC0', 1),
      planned('PMC4', null, 1),
      planned('PMC5', 'CC BY', 1),
      planned('PMC6', 'CC BY-NC-ND', 1),
      planned('PMC7', 'TDM', 1),
    ];
    const units = cutUnits(selected, { maxArticles: 2, maxImages: 100 });
    assert.deepEqual(
      units.map((u) => [u.unitId, u.subset, u.index, u.articles.map((a) => a.pmcid)]),
      [
        ['commercial-000000', 'commercial', 0, ['PMC1', 'PMC3']],
        ['commercial-000001', 'commercial', 1, ['PMC5']],
        ['noncommercial-000000', 'noncommercial', 0, ['PMC2', 'PMC6']],
        ['other-000000', 'other', 0, ['PMC4', 'PMC7']],
      ],
    );
  });

  it('never puts more than maxArticles articles in a unit', () => {
    const selected = Array.from({ length: 23 }, (_, i) => planned(`PMC${i + 1}`, 'CC BY', 0));
    const units = cutUnits(selected, { maxArticles: 5, maxImages: 10 });
    assert.deepEqual(
      units.map((u) => u.articles.length),
      [5, 5, 5, 5, 3],
    );
    assert.deepEqual(
      units.map((u) => u.index),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(
      units.flatMap((u) => u.articles.map((a) => a.pmcid)),
      selected.map((a) => a.pmcid),
    );
  });

  it('cuts before an article whose images would push the unit over maxImages', () => {
    // images 3, 4, 2, 5, 1 with maxImages 6: [3] (3+4>6), [4, 2] (6), [5, 1] (6)
    const selected = [3, 4, 2, 5, 1].map((n, i) => planned(`PMC${i + 1}`, 'CC BY', n));
    const units = cutUnits(selected, { maxArticles: 100, maxImages: 6 });
    assert.deepEqual(
      units.map((u) => u.articles.map((a) => a.pmcid)),
      [['PMC1'], ['PMC2', 'PMC3'], ['PMC4', 'PMC5']],
    );
    for (const u of units) assert.ok(u.articles.reduce((n, a) => n + a.media.length, 0) <= 6, u.unitId);
  });

  it('gives an article with more images than maxImages a unit of its own', () => {
    const selected = [planned('PMC1', 'CC BY', 2), planned('PMC2', 'CC BY', 9), planned('PMC3', 'CC BY', 1)];
    const units = cutUnits(selected, { maxArticles: 100, maxImages: 5 });
    assert.deepEqual(
      units.map((u) => [u.unitId, u.articles.map((a) => a.pmcid)]),
      [
        ['commercial-000000', ['PMC1']],
        ['commercial-000001', ['PMC2']],
        ['commercial-000002', ['PMC3']],
      ],
    );
    // ...also when it comes first.
    const first = cutUnits([planned('PMC2', 'CC BY', 9), planned('PMC3', 'CC BY', 1)], {
      maxArticles: 100,
      maxImages: 5,
    });
    assert.deepEqual(
      first.map((u) => u.articles.map((a) => a.pmcid)),
      [['PMC2'], ['PMC3']],
    );
  });

  it('returns no units for an empty selection', () => {
    assert.deepEqual(cutUnits([], { maxArticles: 10, maxImages: 10 }), []);
  });
});

describe('inventory over a DirPmcSource', () => {
  const INV = 'inventory-reports/pmc-oa-opendata/metadata';
  let root: string;
  let source: DirPmcSource;
  const rows = [
    // Bucket, ETag, Key, LastModifiedDate: a different column order from the usual one.
    ['pmc-oa-opendata', 'f25d9c5f5b85338f62156faeedfc1e95', 'metadata/PMC10000002.1.json', '2026-01-08T11:47:59.000Z'],
    ['pmc-oa-opendata', 'a47959089c1fd488b91004eeb06adfa9', 'metadata/PMC10000003.1.json', '2026-01-08T11:55:14.000Z'],
  ];
  const write = (rel: string, data: Buffer | string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
  };

  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-test-'));
    source = new DirPmcSource(root);
    const gz1 = gzipSync(rows.map((r) => r.map((c) => `"${c}"`).join(',')).join('\r\n') + '\r\n');
    const gz2 = gzipSync(
      '"pmc-oa-opendata","0123456789abcdef0123456789abcdef","metadata/PMC9.2.json","2026-01-09T00:00:00.000Z"\n\n',
    );
    write(`${INV}/data/aaaa.csv.gz`, gz1);
    write(`${INV}/data/bbbb.csv.gz`, gz2);
    write(
      `${INV}/2026-01-18T01-00Z/manifest.json`,
      JSON.stringify({
        sourceBucket: 'pmc-oa-opendata',
        fileFormat: 'CSV',
        fileSchema: 'Bucket, ETag, Key, LastModifiedDate',
        files: [
          { key: `${INV}/data/aaaa.csv.gz`, size: gz1.length, MD5checksum: md5(gz1) },
          { key: `${INV}/data/bbbb.csv.gz`, size: gz2.length, MD5checksum: md5(gz2) },
        ],
      }),
    );
    write(
      `${INV}/2026-01-17T01-00Z/manifest.json`,
      JSON.stringify({ fileSchema: 'Bucket, Key, LastModifiedDate, ETag', files: [] }),
    );
    write(
      `${INV}/2025-12-31T01-00Z/manifest.json`,
      JSON.stringify({ fileSchema: 'Bucket, Key, LastModifiedDate, ETag', files: [] }),
    );
    // hive/ and data/ sort after the dated folders; neither may be taken for the newest manifest.
    write(`${INV}/hive/dt=2026-01-19-01-00/symlink.txt`, `s3://pmc-oa-opendata/${INV}/data/aaaa.csv.gz\n`);
    write(`${INV}/hive/manifest.json`, '{}');
    write(
      `${INV}/bad-md5/manifest.json`,
      JSON.stringify({
        fileSchema: 'Bucket, Key, ETag',
        files: [{ key: `${INV}/data/aaaa.csv.gz`, MD5checksum: md5('other bytes') }],
      }),
    );
    write(`${INV}/no-etag/manifest.json`, JSON.stringify({ fileSchema: 'Bucket, Key, LastModifiedDate', files: [] }));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('latestInventoryManifest picks the newest dated folder and skips data/ and hive/', async () => {
    assert.equal(await latestInventoryManifest(source), `${INV}/2026-01-18T01-00Z/manifest.json`);
  });

  it('latestInventoryManifest fails clearly when no dated folder exists', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-test-empty-'));
    try {
      fs.mkdirSync(path.join(empty, INV, 'data'), { recursive: true });
      fs.writeFileSync(path.join(empty, INV, 'data', 'x.csv.gz'), '');
      await assert.rejects(latestInventoryManifest(new DirPmcSource(empty)), /no inventory manifest/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('readInventory locates columns by fileSchema, across every listed data file', async () => {
    const got: InventoryRow[] = [];
    for await (const r of readInventory(source, `${INV}/2026-01-18T01-00Z/manifest.json`)) got.push(r);
    assert.deepEqual(got, [
      {
        key: 'metadata/PMC10000002.1.json',
        etag: 'f25d9c5f5b85338f62156faeedfc1e95',
        lastModified: '2026-01-08T11:47:59.000Z',
      },
      {
        key: 'metadata/PMC10000003.1.json',
        etag: 'a47959089c1fd488b91004eeb06adfa9',
        lastModified: '2026-01-08T11:55:14.000Z',
      },
      {
        key: 'metadata/PMC9.2.json',
        etag: '0123456789abcdef0123456789abcdef',
        lastModified: '2026-01-09T00:00:00.000Z',
      },
    ]);
  });

  it('readInventory verifies each data file against the manifest MD5checksum', async () => {
    const read = async () => {
      for await (const _ of readInventory(source, `${INV}/bad-md5/manifest.json`)) void _;
    };
    await assert.rejects(read, (err: unknown) => err instanceof SourceError && err.kind === 'checksum');
  });

  it('readInventory refuses a fileSchema without ETag', async () => {
    const read = async () => {
      for await (const _ of readInventory(source, `${INV}/no-etag/manifest.json`)) void _;
    };
    await assert.rejects(read, /lacks Key or ETag/);
  });
});
