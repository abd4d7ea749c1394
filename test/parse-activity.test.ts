import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { readNdjson } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import type { QuarantineRecord } from '../activities/common/quarantine';
import type { StageManifest } from '../activities/common/stage';
import { articleXmlPath } from '../activities/fetch/activity';
import { parseArticles, type ParsedArticleLine, type ParseResult } from '../activities/parse/activity';
import { DEFAULT_JATS_LIMITS } from '../activities/parse/jats';
import type { PlannedArticle, PlannedUnit } from '../activities/plan/plan';

const nxmlDir = fixturePaths.nxml();
const fixture = (pmcid: string): Buffer =>
  fs.readFileSync(
    path.join(
      nxmlDir,
      fs.readdirSync(nxmlDir).find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`)) as string,
    ),
  );

function planned(pmcid: string, mediaNames: string[] = []): PlannedArticle {
  const prefix = `${pmcid}.1`;
  return {
    pmcid,
    version: 1,
    pmid: null,
    doi: null,
    citation: null,
    licenseCode: 'CC BY',
    xml: { key: `${prefix}/${prefix}.xml`, md5: null },
    media: mediaNames.map((name) => ({ key: `${prefix}/${name}`, md5: null })),
    etag: 'e',
  };
}

const billionLaughs = (): string => {
  const lol = ['<!ENTITY lol0 "lol">'];
  for (let i = 1; i <= 9; i++) lol.push(`<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`);
  return `<!DOCTYPE article [${lol.join('')}]><article><front><article-meta><title-group><article-title>&lol9;</article-title></title-group></article-meta></front></article>`;
};

describe('parseArticles: each bad article is quarantined while the rest of the unit goes through', () => {
  let dataDir: string;
  let release: ReleaseInput;
  let layout: ReleaseLayout;
  const unitId = 'commercial-000000';
  let unitDir: string;

  // What the fetch stage left on disk, per article (null: never fetched).
  const articles: { planned: PlannedArticle; xml: Buffer | 'sparse-huge' | null }[] = [
    {
      planned: planned('PMC7159286', fs.readdirSync(path.join(fixturePaths.images(), 'PMC7159286'))),
      xml: fixture('PMC7159286'),
    },
    { planned: planned('PMC1000001'), xml: fixture('PMC7417471').subarray(0, 100_000) }, // truncated download
    { planned: planned('PMC3585041'), xml: fixture('PMC3585041') }, // its one figure is not in the bucket
    { planned: planned('PMC1000002'), xml: Buffer.from(billionLaughs()) },
    { planned: planned('PMC1000003'), xml: Buffer.alloc(0) },
    {
      planned: planned('PMC1000004'),
      xml: Buffer.from('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>'),
    },
    { planned: planned('PMC1000005'), xml: null }, // fetch failed: already quarantined by fetch
    { planned: planned('PMC1000006'), xml: 'sparse-huge' },
    {
      // invalid UTF-8: a degraded record, not a rejection
      planned: planned('PMC12491691', ['ga1.jpg', ...[1, 2, 3, 4, 5, 6].map((n) => `gr${n}.jpg`)]),
      xml: Buffer.concat([
        fixture('PMC12491691').subarray(0, 5000),
        Buffer.from([0xc3]),
        fixture('PMC12491691').subarray(5001),
      ]),
    },
    { planned: planned('PMC1000007'), xml: Buffer.from('<article><body><p>a <b>b</p></body></article>') }, // mis-nested
    {
      // no front matter: the plan's PMCID stands in
      planned: planned('PMC1000008', ['f1.jpg']),
      xml: Buffer.from(
        '<article xmlns:xlink="http://www.w3.org/1999/xlink"><body><fig id="f1"><caption><p>Cat.</p></caption><graphic xlink:href="f1"/></fig></body></article>',
      ),
    },
  ];

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parse-activity-'));
    release = ReleaseInputSchema.parse({
      releaseId: 'parse-test',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: path.join(dataDir, 'bucket') },
    });
    layout = new ReleaseLayout(dataDir, release.releaseId);
    unitDir = layout.unitDir(unitId);
    const unit: PlannedUnit = { unitId, subset: 'commercial', index: 0, articles: articles.map((a) => a.planned) };
    fs.mkdirSync(path.dirname(layout.unitFile(unitId)), { recursive: true });
    fs.writeFileSync(layout.unitFile(unitId), JSON.stringify(unit));
    for (const { planned: p, xml } of articles) {
      if (xml === null) continue;
      const file = articleXmlPath(unitDir, p.pmcid, p.version);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      if (xml === 'sparse-huge') {
        fs.writeFileSync(file, '<article>');
        fs.truncateSync(file, DEFAULT_JATS_LIMITS.maxBytes + 1); // sparse: no disk, no memory
      } else fs.writeFileSync(file, xml);
    }
  });

  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('writes articles.ndjson for the readable articles and one quarantine record per rejected article or figure', async () => {
    const result = await parseArticles({ release, unitId });
    const { articles: n, parsed, failed, figures, candidates } = result;
    assert.deepEqual(
      { n, parsed, failed, figures, candidates },
      { n: 11, parsed: 4, failed: 6, figures: 14, candidates: 12 },
    );

    const lines = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
    assert.deepEqual(
      lines.map((l) => [l.article, l.record.pmcid, l.record.warnings.length]),
      [
        ['PMC7159286.1', 'PMC7159286', 0],
        ['PMC3585041.1', 'PMC3585041', 0],
        ['PMC12491691.1', 'PMC12491691', 1],
        ['PMC1000008.1', 'PMC1000008', 1],
      ],
    );
    const [lancet, , elsevier, bare] = lines as [
      ParsedArticleLine,
      ParsedArticleLine,
      ParsedArticleLine,
      ParsedArticleLine,
    ];
    assert.deepEqual(
      lancet.figures.map((f) => [f.key, f.mediaFile, f.rejected]),
      [
        ['PMC7159286_1_000', 'gr1_lrg.jpg', null],
        ['PMC7159286_1_001', 'gr2_lrg.jpg', null],
        ['PMC7159286_1_002', 'gr3a_lrg.jpg', null],
        ['PMC7159286_1_003', 'gr3b_lrg.jpg', null],
        ['PMC7159286_1_004', 'gr4_lrg.jpg', null],
      ],
    );
    assert.deepEqual(elsevier.record.warnings, ['invalid UTF-8: 1 byte sequence replaced by U+FFFD']);
    assert.deepEqual(
      bare.figures.map((f) => [f.key, f.mediaFile, f.caption, f.rejected]),
      [['PMC1000008_1_000', 'f1.jpg', 'Cat.', null]],
    );
    assert.match(bare.record.warnings[0] as string, /no <article-meta>/);

    const q = await readNdjson<QuarantineRecord>(layout.quarantineFile(unitId, 'parse'));
    const byArticle = q.filter((r) => r.figure === null).map((r) => [r.article, r.reason]);
    assert.deepEqual(byArticle, [
      ['PMC1000001.1', 'invalid-xml'],
      ['PMC1000002.1', 'entity-limit'],
      ['PMC1000003.1', 'empty'],
      ['PMC1000004.1', 'not-jats'],
      ['PMC1000006.1', 'too-large'],
      ['PMC1000007.1', 'invalid-xml'],
    ]);
    const detail = (article: string) => q.find((r) => r.article === article && r.figure === null)?.detail ?? '';
    assert.match(
      detail('PMC1000001.1'),
      /^truncated XML: expected <\/[\w-]+> before the end of input \(line \d+, column \d+\)$/,
    );
    assert.match(detail('PMC1000002.1'), /^entity expansion limit: /);
    assert.match(detail('PMC1000004.1'), /found <Error> as the root/);
    assert.match(detail('PMC1000006.1'), new RegExp(`^article too large: ${DEFAULT_JATS_LIMITS.maxBytes + 1} bytes`));
    assert.match(detail('PMC1000007.1'), /^mis-nested XML: expected <\/b> but found <\/p>/);
    assert.ok(!q.some((r) => r.article === 'PMC1000005.1'), "a missing download is fetch's to report");

    assert.deepEqual(
      q.filter((r) => r.figure !== null).map((r) => [r.figure, r.reason]),
      [
        ['PMC3585041_1_000', 'image-not-in-bucket'],
        ['PMC12491691_1_000', 'graphical-abstract'], // published only when figures.graphicalAbstracts is set
      ],
    );
    for (const r of q) assert.equal(r.stage, 'parse');
  });

  it('a rerun returns the recorded result from the manifest without parsing again', async () => {
    const manifest = JSON.parse(
      fs.readFileSync(layout.stageManifest(unitId, 'parse'), 'utf8'),
    ) as StageManifest<ParseResult>;
    assert.equal(manifest.quarantined, 8);
    fs.rmSync(path.join(unitDir, 'articles'), { recursive: true }); // the work could not be redone
    // The recorded result, with the stage's quarantine count (which the unit workflow reports as rejections).
    assert.deepEqual(await parseArticles({ release, unitId }), { ...manifest.result, quarantined: 8 });
  });
});
