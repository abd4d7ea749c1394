import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { readNdjson } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import type { QuarantineRecord } from '../activities/common/quarantine';
import { fetchArticles, fetchFigureMedia } from '../activities/fetch/activity';
import { setFetchTuning, type FetchTuning } from '../activities/fetch/retry';
import { SourceError } from '../activities/fetch/source';
import { LegacyPmcSource } from '../activities/legacy/fetch';
import { FileListParser, type LegacyListRow } from '../activities/legacy/filelist';
import { extractPackage } from '../activities/legacy/package';
import { openLegacyTransport, type LegacyTransport } from '../activities/legacy/transport';
import type { ParsedArticleLine } from '../activities/parse/activity';
import { parseArticles } from '../activities/parse/activity';
import { licenseGroup } from '../activities/plan/license';
import { planRelease, type PlanSummary } from '../activities/plan/activity';
import type { PlannedUnit } from '../activities/plan/plan';
import { sharedDir } from '../config/paths';
import {
  buildTar,
  legacyPackagePath,
  startFtpServer,
  writeLegacyTree,
  type FtpFault,
  type FtpServer,
  type LegacyPackageSpec,
  type TarMemberSpec,
} from '../sample/ftp-server';
import { startMirrorServer, type MirrorServer } from '../sample/mirror-server';

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');
const FIXTURES = path.join(sharedDir(), 'fixtures', 'real');
const REAL_PACKAGE = path.join(FIXTURES, 'packages', 'PMC7112410.tar.gz');
const KB = 1024;

/** The members of a .tar.gz, read with node-tar (an independent reader), by name. */
async function members(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await tar.t({
    file,
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => out.set(e.path, Buffer.concat(chunks)));
    },
  });
  return out;
}

const unitIds = (s: PlanSummary) =>
  Object.entries(s.subsets).flatMap(([subset, v]) =>
    Array.from({ length: v.units }, (_, i) => `${subset}-${String(i).padStart(6, '0')}`),
  );
const quarantineOf = async (layout: ReleaseLayout, ids: string[], stage = 'fetch') =>
  (await Promise.all(ids.map((id) => readNdjson<QuarantineRecord>(layout.quarantineFile(id, stage))))).flat();

function jats(pmcid: string, figures: number): string {
  const figs = Array.from(
    { length: figures },
    (_, i) =>
      `<fig id="f${i + 1}"><label>Figure ${i + 1}</label><caption><p>Legacy caption ${i + 1} of ${pmcid}.</p></caption><graphic xlink:href="fig${i + 1}"/></fig>`,
  ).join('');
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front><journal-meta><journal-title-group><journal-title>Legacy J</journal-title></journal-title-group></journal-meta>` +
    `<article-meta><article-id pub-id-type="pmc">${pmcid.slice(3)}</article-id><title-group><article-title>Legacy ${pmcid}</article-title></title-group></article-meta></front><body><sec><p>Body.</p>${figs}</sec></body></article>\n`
  );
}

/** A package as PMC builds them: `PMC<id>/` with the nXML, a PDF, each figure as .jpg and .gif, a supplement. */
function goodPackage(pmcid: string, figures: number, extra: TarMemberSpec[] = [], seed = ''): Buffer {
  const m: TarMemberSpec[] = [
    { name: `${pmcid}/`, type: 'dir' },
    { name: `${pmcid}/article.nxml`, body: jats(pmcid, figures) },
    { name: `${pmcid}/article.pdf`, body: Buffer.alloc(3000, 7) },
  ];
  for (let i = 1; i <= figures; i++) {
    m.push(
      { name: `${pmcid}/fig${i}.jpg`, body: Buffer.from(`jpeg ${pmcid} ${i} ${seed}`.repeat(50)) },
      { name: `${pmcid}/fig${i}.gif`, body: Buffer.from(`gif ${pmcid} ${i} ${seed}`) },
    );
  }
  m.push({ name: `${pmcid}/supp1.xlsx`, body: 'xlsx' }, ...extra);
  return gzipSync(buildTar(m));
}

const MALICIOUS: TarMemberSpec[] = [
  { name: '/tmp/biomedica-evil-absolute.jpg', body: 'absolute' },
  { name: 'PMC9000002/../../biomedica-evil-escape.jpg', body: 'escape' },
  { name: 'PMC9000002/evil-symlink.jpg', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'PMC9000002/evil-hardlink.nxml', type: 'hardlink', linkname: '/etc/shadow' },
  { name: 'PMC9000002/evil-device.jpg', type: 'char-device' },
  { name: 'PMC9000002/evil-fifo.png', type: 'fifo' },
  { name: 'PMC9000002/huge.jpg', body: Buffer.alloc(600 * KB, 1) },
];

describe('legacy file lists (oa_file_list.csv and .txt)', () => {
  const parseAll = (format: 'csv' | 'txt', text: string) => {
    const p = new FileListParser(format);
    const rows: LegacyListRow[] = [];
    const errors: string[] = [];
    for (const line of text.split(/\r?\n/)) {
      const r = p.line(line);
      if (r && 'error' in r) errors.push(r.error);
      else if (r) rows.push(r);
    }
    return { rows, errors, parser: p };
  };

  it('reads the real headerless excerpt: 10,000 rows, every license grouped exactly', () => {
    const { rows, errors } = parseAll(
      'csv',
      fs.readFileSync(path.join(FIXTURES, 'filelists', 'geralddzx_oa_file_list.csv'), 'utf8'),
    );
    assert.deepEqual(errors, []);
    assert.equal(rows.length, 10_000);
    assert.deepEqual(rows[0], {
      file: 'oa_package/08/e0/PMC13900.tar.gz',
      citation: 'Breast Cancer Res. 2001 Nov 2; 3(1):55-60',
      pmcid: 'PMC13900',
      updated: '2019-11-05 11:56:12',
      pmid: '11250746',
      license: 'NO-CC CODE',
      retracted: false,
    });
    const groups: Record<string, number> = {};
    for (const r of rows)
      groups[`${licenseGroup(r.license)}:${r.license}`] = (groups[`${licenseGroup(r.license)}:${r.license}`] ?? 0) + 1;
    for (const k of Object.keys(groups)) {
      const [group, code] = k.split(/:(.*)/s) as [string, string];
      if (['CC0', 'CC BY', 'CC BY-SA', 'CC BY-ND'].includes(code)) assert.equal(group, 'commercial', k);
      else if (['CC BY-NC', 'CC BY-NC-SA', 'CC BY-NC-ND'].includes(code)) assert.equal(group, 'noncommercial', k);
      else assert.equal(group, 'other', k);
    }
    assert.ok(rows.every((r) => /^oa_package\/[0-9a-f]{2}\/[0-9a-f]{2}\/PMC\d+\.tar\.gz$/.test(r.file)));
  });

  it('reads the real excerpt with its header (and its spreadsheet-mangled dates, kept verbatim)', () => {
    const { rows, errors } = parseAll(
      'csv',
      fs.readFileSync(path.join(FIXTURES, 'filelists', 'seanBr97_oa_file_list.csv'), 'utf8'),
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(
      rows.map((r) => r.pmcid),
      ['PMC7112410', 'PMC7135076', 'PMC7159286', 'PMC7159299'],
    );
    assert.deepEqual(rows[0], {
      file: 'oa_package/ac/6a/PMC7112410.tar.gz',
      citation: 'Lancet. 2003 May 24; 361(9371):1767-1772',
      pmcid: 'PMC7112410',
      updated: '06-04-20 14:56',
      pmid: '12781535',
      license: 'NO-CC CODE',
      retracted: false,
    });
  });

  it('reads the older tab-separated .txt list (date line, PMID: prefix, no Last Updated)', () => {
    const text =
      '2019-05-30 12:51:05\noa_package/08/e0/PMC13900.tar.gz\tBreast Cancer Res. 2001 Nov 2; 3(1):55-60\tPMC13900\tPMID:11250746\tNO-CC CODE\noa_package/e6/58/PMC176545.tar.gz\tPLoS Biol. 2003 Oct 18; 1(1):e5\tPMC176545\tPMID:\tCC BY\n';
    const { rows, errors, parser } = parseAll('txt', text);
    assert.deepEqual(errors, []);
    assert.equal(parser.listDate, '2019-05-30 12:51:05');
    assert.deepEqual(rows[1], {
      file: 'oa_package/e6/58/PMC176545.tar.gz',
      citation: 'PLoS Biol. 2003 Oct 18; 1(1):e5',
      pmcid: 'PMC176545',
      updated: null,
      pmid: null,
      license: 'CC BY',
      retracted: false,
    });
  });

  it('honours a Retracted column, quoted citations with commas, and refuses bad rows', () => {
    const text =
      'File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted\n' +
      'oa_package/aa/bb/PMC1.tar.gz,"J, Part A. 2020; 1:1",PMC1,2020-01-01 00:00:00,<PMID unknown>,CC BY-NC,yes\n' +
      '/etc/passwd.tar.gz,x,PMC2,,,CC BY,no\n' +
      'oa_package/../../x.tar.gz,x,PMC3,,,CC BY,no\n' +
      'oa_package/aa/bb/PMC4.tar.gz,x,4,,,CC BY,no\n';
    const { rows, errors } = parseAll('csv', text);
    assert.deepEqual(rows, [
      {
        file: 'oa_package/aa/bb/PMC1.tar.gz',
        citation: 'J, Part A. 2020; 1:1',
        pmcid: 'PMC1',
        updated: '2020-01-01 00:00:00',
        pmid: null,
        license: 'CC BY-NC',
        retracted: true,
      },
    ]);
    assert.equal(errors.length, 3);
    assert.match(errors.join('\n'), /not a package path[\s\S]*not a package path[\s\S]*not a PMCID/);
  });
});

describe('legacy package extraction', () => {
  let tmp: string;
  const limits = { maxEntryBytes: 64 * KB, maxPackageBytes: 10 * 1024 * KB };
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'legacy-pkg-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('stream-extracts only the nXML and the images of the real package, byte for byte', async () => {
    const stage = path.join(tmp, 'real');
    const r = await extractPackage(fs.createReadStream(REAL_PACKAGE), 'oa_package/ac/6a/PMC7112410.tar.gz', stage, {
      maxEntryBytes: 64 * 1024 * KB,
      maxPackageBytes: 1024 * 1024 * KB,
    });
    const truth = await members(REAL_PACKAGE);
    assert.equal(r.xml?.name, 'main.nxml');
    assert.equal(r.xml?.md5, md5(truth.get('PMC7112410/main.nxml')!));
    assert.deepEqual(r.images.map((i) => i.name).sort(), [
      'gr1_lrg.gif',
      'gr1_lrg.jpg',
      'gr2_lrg.gif',
      'gr2_lrg.jpg',
      'gr3_lrg.gif',
      'gr3_lrg.jpg',
      'gr4_lrg.gif',
      'gr4_lrg.jpg',
    ]);
    for (const i of r.images) {
      assert.equal(i.md5, md5(truth.get(`PMC7112410/${i.name}`)!), i.name);
      assert.deepEqual(fs.readFileSync(i.staged), truth.get(`PMC7112410/${i.name}`));
    }
    assert.deepEqual(r.rejected, []);
    assert.equal(r.entries, 11);
    assert.equal(fs.readdirSync(stage).length, 9, 'the PDF was never written');
  });

  it('ends the transfer when its staging folder cannot be made (the connection goes back to the pool)', async () => {
    const blocker = path.join(tmp, 'a-file');
    fs.writeFileSync(blocker, 'not a folder');
    const input = new Readable({ read() {} }); // a transfer that would never end by itself
    await assert.rejects(
      extractPackage(input, 'oa_package/x/PMC1.tar.gz', path.join(blocker, 'stage'), limits),
      /ENOTDIR|EEXIST/,
    );
    assert.equal(input.destroyed, true);
  });

  it('refuses absolute paths, .. escapes, links, devices and oversize members, with a reason each', async () => {
    const stage = path.join(tmp, 'evil', 'stage');
    const r = await extractPackage(
      Readable.from([goodPackage('PMC9000002', 1, MALICIOUS)]),
      'x/PMC9000002.tar.gz',
      stage,
      limits,
    );
    assert.deepEqual(
      r.rejected.map((e) => [e.path, e.reason]),
      [
        ['/tmp/biomedica-evil-absolute.jpg', 'absolute-path'],
        ['PMC9000002/../../biomedica-evil-escape.jpg', 'parent-escape'],
        ['PMC9000002/evil-symlink.jpg', 'link'],
        ['PMC9000002/evil-hardlink.nxml', 'link'],
        ['PMC9000002/evil-device.jpg', 'device'],
        ['PMC9000002/evil-fifo.png', 'device'],
        ['PMC9000002/huge.jpg', 'too-large'],
      ],
    );
    assert.match(r.rejected[2]!.detail, /symbolic link .* -> "\/etc\/passwd"/);
    assert.equal(r.xml?.name, 'article.nxml');
    assert.deepEqual(r.images.map((i) => i.name).sort(), ['fig1.gif', 'fig1.jpg']);
    assert.ok(!fs.existsSync('/tmp/biomedica-evil-absolute.jpg'));
    assert.deepEqual(fs.readdirSync(path.join(tmp, 'evil')), ['stage'], 'nothing written beside the staging folder');
  });

  it('verifies packages without md5 by gzip CRC and tar integrity, and bounds the decompressed size', async () => {
    const good = goodPackage('PMC1', 2);
    const raw = buildTar([
      { name: 'PMC1/a.nxml', body: jats('PMC1', 0) },
      { name: 'PMC1/b.jpg', body: Buffer.alloc(5000, 3) },
    ]);
    const badCrc = Buffer.from(good);
    badCrc[badCrc.length - 6]! ^= 0xff;
    const badHeader = Buffer.from(raw);
    badHeader[10]! ^= 0x41; // in the first member's name: its header checksum no longer adds up
    const cases: [string, Buffer, RegExp][] = [
      ['truncated gzip', good.subarray(0, good.length - 40), /gzip: unexpected end of file/],
      ['CRC mismatch', badCrc, /gzip: incorrect data check/],
      ['tar cut at a member boundary', gzipSync(raw.subarray(0, 1024)), /no end-of-archive/],
      ['tar cut inside a member', gzipSync(raw.subarray(0, 2048)), /tar: .*Truncated input|no end-of-archive/],
      ['damaged tar header', gzipSync(badHeader), /tar: .*checksum/],
      ['not a gzip', Buffer.from('<html>404</html>'), /gzip: incorrect header check/],
    ];
    for (const [what, bytes, why] of cases) {
      const stage = path.join(tmp, `bad-${what.replace(/\W+/g, '-')}`);
      await assert.rejects(
        extractPackage(Readable.from([bytes]), 'p.tar.gz', stage, limits),
        (err: unknown) => err instanceof SourceError && err.kind === 'checksum' && why.test(err.message),
        what,
      );
    }
    await assert.rejects(
      extractPackage(
        Readable.from([
          gzipSync(Buffer.concat([buildTar([{ name: 'PMC1/a.nxml', body: Buffer.alloc(300 * KB, 32) }])])),
        ]),
        'big.tar.gz',
        path.join(tmp, 'bomb'),
        { maxEntryBytes: 1024 * KB, maxPackageBytes: 200 * KB },
      ),
      (err: unknown) => err instanceof SourceError && err.kind === 'too-large' && !err.retryable,
    );
  });
});

describe('the legacy source end to end (plan, fetch, parse, media)', function () {
  this.timeout(60_000);
  let root: string;
  let tree: string;
  let dataDir: string;
  let ftp: FtpServer;
  let tuning: FetchTuning;
  let n = 0;
  const specs = (): LegacyPackageSpec[] => [
    {
      pmcid: 'PMC7112410',
      tarGz: fs.readFileSync(REAL_PACKAGE),
      file: 'oa_package/ac/6a/PMC7112410.tar.gz',
      citation: 'Lancet. 2003 May 24; 361(9371):1767-1772',
      pmid: '12781535',
      license: 'NO-CC CODE',
      updated: '2020-04-06 14:56:00',
    },
    { pmcid: 'PMC9000001', tarGz: goodPackage('PMC9000001', 3), license: 'CC BY' },
    { pmcid: 'PMC9000002', tarGz: goodPackage('PMC9000002', 1, MALICIOUS), license: 'CC BY-NC' },
    { pmcid: 'PMC9000003', tarGz: goodPackage('PMC9000003', 1).subarray(0, 300), license: 'CC BY' },
    { pmcid: 'PMC9000004', tarGz: null, license: 'CC BY' },
    { pmcid: 'PMC9000005', tarGz: gzipSync(buildTar([{ name: 'PMC9000005/only.pdf', body: 'pdf' }])), license: 'CC0' },
    { pmcid: 'PMC9000006', tarGz: goodPackage('PMC9000006', 1), license: 'CC BY 4.0' },
  ];
  const release = (baseUrl: string, over: Record<string, unknown> = {}): ReleaseInput =>
    ReleaseInputSchema.parse({
      releaseId: `legacy-${++n}`,
      dataDir,
      source: { kind: 'pmc-legacy', baseUrl, maxEntryBytes: 512 * KB, ...over },
      entrez: { enabled: false },
    });

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'legacy-tree-'));
    tree = path.join(root, 'pub', 'pmc');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'legacy-data-'));
    await writeLegacyTree(tree, specs());
    ftp = await startFtpServer(root);
    tuning = setFetchTuning({ attempts: 2, backoffMs: 5, backoffMaxMs: 10, timeoutMs: 5_000 });
  });
  after(async () => {
    setFetchTuning(tuning);
    await ftp?.close();
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('over FTP (ftp-srv on loopback, basic-ftp)', () => {
    let rel: ReleaseInput;
    let plan: PlanSummary;
    let layout: ReleaseLayout;
    before(async () => {
      rel = release(`${ftp.url}/pub/pmc`);
      layout = new ReleaseLayout(dataDir, rel.releaseId);
      plan = await planRelease(rel);
      ftp.retrieved.length = 0;
      for (const id of unitIds(plan)) await fetchArticles({ release: rel, unitId: id });
    });

    it('plans from the list alone: license groups from the list, unknown codes recorded, no metadata GET', () => {
      assert.equal(plan.inventoryManifest, 'oa_file_list.csv');
      assert.equal(plan.inventoryRows, 7);
      assert.equal(plan.selectedArticles, 7);
      assert.equal(plan.metadataFetched, 0);
      assert.deepEqual(plan.otherLicenses, { 'NO-CC CODE': 1, 'CC BY 4.0': 1 });
      assert.deepEqual(Object.fromEntries(Object.entries(plan.subsets).map(([k, v]) => [k, v.articles])), {
        commercial: 4,
        noncommercial: 1,
        other: 2,
      });
    });

    it('puts the nXML and every image exactly where the cloud path puts them, and fills the unit media with md5s', async () => {
      const unit = JSON.parse(fs.readFileSync(layout.unitFile('other-000000'), 'utf8')) as PlannedUnit;
      const real = unit.articles.find((a) => a.pmcid === 'PMC7112410')!;
      const truth = await members(REAL_PACKAGE);
      const unitDir = layout.unitDir('other-000000');
      assert.deepEqual(
        fs.readFileSync(path.join(unitDir, 'articles', 'PMC7112410.1.xml')),
        truth.get('PMC7112410/main.nxml'),
      );
      assert.equal(real.media.length, 8);
      for (const m of real.media) {
        assert.match(m.key, /^PMC7112410\.1\/gr\d_lrg\.(jpg|gif)$/);
        assert.equal(m.md5, md5(truth.get(`PMC7112410/${path.basename(m.key)}`)!));
        assert.equal(md5(fs.readFileSync(path.join(unitDir, 'media', m.key))), m.md5);
      }
      assert.deepEqual(real.package, { path: 'oa_package/ac/6a/PMC7112410.tar.gz', updated: '2020-04-06 14:56:00' });
      assert.ok(!fs.existsSync(path.join(unitDir, '.staging')));
    });

    it('records every refused member and every failed package per article', async () => {
      const q = await quarantineOf(layout, unitIds(plan));
      const reasons = q.map((r) => [r.article, r.reason]).sort((a, b) => (a.join() < b.join() ? -1 : 1));
      assert.deepEqual(reasons, [
        ['PMC9000002.1', 'package-absolute-path'],
        ['PMC9000002.1', 'package-device'],
        ['PMC9000002.1', 'package-device'],
        ['PMC9000002.1', 'package-link'],
        ['PMC9000002.1', 'package-link'],
        ['PMC9000002.1', 'package-parent-escape'],
        ['PMC9000002.1', 'package-too-large'],
        ['PMC9000003.1', 'xml-checksum'],
        ['PMC9000004.1', 'xml-not-found'],
        ['PMC9000005.1', 'xml-not-in-package'],
      ]);
      assert.match(q.find((r) => r.article === 'PMC9000003.1')!.detail, /damaged: gzip: unexpected end of file/);
      const everything = fs.readdirSync(dataDir, { recursive: true }).map(String);
      assert.deepEqual(
        everything.filter((f) => /evil/.test(f)),
        [],
        'no refused member was written anywhere',
      );
      assert.ok(
        !fs.existsSync('/tmp/biomedica-evil-absolute.jpg') &&
          !fs.existsSync(path.join(os.tmpdir(), 'biomedica-evil-escape.jpg')),
      );
    });

    it('hands parse and the media stage what they expect, with no further download', async () => {
      ftp.retrieved.length = 0;
      const task = { release: rel, unitId: 'other-000000' };
      const parsed = await parseArticles(task);
      assert.equal(parsed.parsed, 2);
      const lines = await readNdjson<ParsedArticleLine>(path.join(layout.unitDir('other-000000'), 'articles.ndjson'));
      const figs = lines.find((l) => l.article === 'PMC7112410.1')!.figures;
      assert.deepEqual(
        figs.map((f) => [f.mediaKey, f.rejected]),
        [1, 2, 3, 4].map((i) => [`PMC7112410.1/gr${i}_lrg.jpg`, null]),
        'the full .jpg, never the .gif thumbnail',
      );
      const media = await fetchFigureMedia(task);
      assert.deepEqual([media.wanted, media.reused, media.fetched, media.failed], [5, 5, 0, 0]);
      assert.deepEqual(ftp.retrieved, []);
    });

    it('reruns without a download: extracted files in place are reused, else restored from the cache', async () => {
      fs.rmSync(layout.stageManifest('commercial-000000', 'fetch'));
      fs.rmSync(layout.unitDir('commercial-000000'), { recursive: true });
      ftp.retrieved.length = 0;
      const r = await fetchArticles({ release: rel, unitId: 'commercial-000000' });
      // PMC9000001 and PMC9000005 (no nXML: known from its cached index) need no download; the damaged
      // PMC9000003 is tried again (twice: it stays damaged) and the absent PMC9000004 is asked for again.
      assert.deepEqual([r.cached, r.fetched, r.failed], [1, 0, 3]);
      assert.deepEqual(
        ftp.retrieved.map((f) => path.basename(f)),
        ['PMC9000003.tar.gz', 'PMC9000003.tar.gz'],
      );
    });

    it('reads one member by key through the PmcSource adapter', async () => {
      const transport = openLegacyTransport({ baseUrl: `${ftp.url}/pub/pmc`, connections: 2 });
      try {
        const unit = JSON.parse(fs.readFileSync(layout.unitFile('other-000000'), 'utf8')) as PlannedUnit;
        const src = new LegacyPmcSource(
          transport,
          unit.articles,
          { maxEntryBytes: 64 * KB * 1024, maxPackageBytes: 1 << 30 },
          path.join(dataDir, 'adapter'),
        );
        const m = unit.articles
          .find((a) => a.pmcid === 'PMC7112410')!
          .media.find((x) => x.key.endsWith('gr2_lrg.jpg'))!;
        const got = await src.get(m.key, { expectedMd5: m.md5 });
        assert.equal(md5(got.body), m.md5);
        await assert.rejects(
          src.get('PMC7112410.1/nope.jpg'),
          (err: unknown) => err instanceof SourceError && err.kind === 'not-found',
        );
        await assert.rejects(
          src.get('PMC1.1/x.jpg'),
          (err: unknown) => err instanceof SourceError && err.kind === 'not-found',
        );
      } finally {
        await transport.close();
      }
    });

    it('maps a missing list to a non-retryable failure', async () => {
      const bad = release(`${ftp.url}/pub/pmc`, { fileList: 'no_such_list.csv' });
      await assert.rejects(
        planRelease(bad),
        (err: unknown) =>
          (err as { nonRetryable?: boolean }).nonRetryable === true &&
          /not-found|551|550|ENOENT/.test((err as Error).message),
      );
    });
  });

  describe('over HTTPS (the loopback S3 stand-in serving the same tree)', () => {
    let mirror: MirrorServer;
    before(async () => {
      mirror = await startMirrorServer(root);
    });
    after(async () => mirror?.close());

    it('plans the same and retries a package dropped mid-body or answered with a 500', async () => {
      const rel = release(`${mirror.baseUrl}/pub/pmc`, { fileList: 'oa_file_list.txt' });
      const plan = await planRelease(rel);
      assert.equal(plan.selectedArticles, 7);
      fs.rmSync(path.join(dataDir, 'cache'), { recursive: true, force: true }); // make every package a real download
      mirror.faults.push(
        { match: `pub/pmc/${legacyPackagePath('PMC9000001')}`, fault: { kind: 'drop', afterBytes: 200 }, times: 1 },
        { match: `pub/pmc/${legacyPackagePath('PMC9000006')}`, fault: { kind: 'status', status: 500 }, times: 1 },
      );
      for (const id of unitIds(plan)) await fetchArticles({ release: rel, unitId: id });
      const gets = (p: string) =>
        mirror.requests.filter((r) => r.key === `pub/pmc/${legacyPackagePath(p)}`).map((r) => r.fault ?? r.status);
      assert.deepEqual(gets('PMC9000001'), ['drop', 200]);
      assert.deepEqual(gets('PMC9000006'), ['status', 200]);
      const layout = new ReleaseLayout(dataDir, rel.releaseId);
      const q = await quarantineOf(layout, unitIds(plan));
      assert.deepEqual(
        [...new Set(q.filter((r) => !r.reason.startsWith('package-')).map((r) => `${r.article} ${r.reason}`))].sort(),
        ['PMC9000003.1 xml-checksum', 'PMC9000004.1 xml-not-found', 'PMC9000005.1 xml-not-in-package'],
      );
      const unit = JSON.parse(fs.readFileSync(layout.unitFile('commercial-000000'), 'utf8')) as PlannedUnit;
      assert.equal(unit.articles.find((a) => a.pmcid === 'PMC9000001')!.media.length, 6);
    });
  });

  describe('incremental over the legacy list', () => {
    it('compares package path and Last Updated, and downloads only new and updated packages', async () => {
      const base = `${ftp.url}/pub/pmc`;
      const first = release(base);
      const p1 = await planRelease(first);
      for (const id of unitIds(p1)) await fetchArticles({ release: first, unitId: id });
      // Next list: PMC9000001 updated (new bytes, new date), PMC9000006 gone, PMC9000007 new.
      const next = specs().filter((s) => s.pmcid !== 'PMC9000006');
      next[1] = { ...next[1]!, tarGz: goodPackage('PMC9000001', 2, [], 'v2'), updated: '2024-07-01 08:00:00' };
      next.push({ pmcid: 'PMC9000007', tarGz: goodPackage('PMC9000007', 1), license: 'CC BY-ND' });
      await writeLegacyTree(tree, next);
      const second = ReleaseInputSchema.parse({
        ...first,
        releaseId: `legacy-next-${++n}`,
        previousRelease: first.releaseId,
      });
      const p2 = await planRelease(second);
      assert.deepEqual(p2.changes, {
        previousRelease: first.releaseId,
        new: 1,
        changed: 1,
        unchanged: 5,
        removed: 1,
        newlyRetracted: 0,
      });
      ftp.retrieved.length = 0;
      for (const id of unitIds(p2)) await fetchArticles({ release: second, unitId: id });
      const got = [...new Set(ftp.retrieved.map((f) => path.basename(f)))].sort();
      // The updated and the new package, and the damaged one (never cached, so tried again); the rest come from the cache.
      assert.deepEqual(got, ['PMC9000001.tar.gz', 'PMC9000003.tar.gz', 'PMC9000007.tar.gz']);
      await writeLegacyTree(tree, specs());
    });
  });
});

describe('legacy packages over a faulty FTP mirror (ftp-srv faults on loopback)', function () {
  this.timeout(120_000);
  const ATTEMPTS = 3;
  const STALL_TIMEOUT_MS = 1_000;
  let root: string;
  let ftp: FtpServer;
  let tuning: FetchTuning;
  let n = 0;
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  // PMC9100009 is the only noncommercial article: a unit of its own, for the package whose every attempt fails.
  const specs: LegacyPackageSpec[] = [
    {
      pmcid: 'PMC7112410',
      tarGz: fs.readFileSync(REAL_PACKAGE),
      file: 'oa_package/ac/6a/PMC7112410.tar.gz',
      license: 'NO-CC CODE',
    },
    ...[1, 2, 3, 4].map((i) => ({
      pmcid: `PMC910000${i}`,
      tarGz: goodPackage(`PMC910000${i}`, 2, [{ name: `PMC910000${i}/scan.png`, body: randomBytes(160 * KB) }]),
      license: 'CC BY',
    })),
    {
      pmcid: 'PMC9100009',
      tarGz: goodPackage('PMC9100009', 1, [{ name: 'PMC9100009/scan.png', body: randomBytes(200 * KB) }]),
      license: 'CC BY-NC',
    },
  ];
  /** The package's path below the served folder (what the server's fault rules match). */
  const served = (pmcid: string) => `pub/pmc/${specs.find((p) => p.pmcid === pmcid)!.file ?? legacyPackagePath(pmcid)}`;
  /** sha256 of the package and of each member a release keeps (the nXML and the images), by PMCID. */
  const truth = new Map<string, { pkg: string; bytes: number; xml: string; images: Map<string, string> }>();
  const attempts = (pmcid: string) =>
    ftp.transfers.filter((t) => t.path === served(pmcid)).map((t) => t.fault ?? 'whole');

  async function sha256Of(stream: Promise<Readable>): Promise<{ sha: string; bytes: number }> {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const c of await stream) {
      hash.update(c as Buffer);
      bytes += (c as Buffer).length;
    }
    return { sha: hash.digest('hex'), bytes };
  }

  async function freshRelease(): Promise<{ rel: ReleaseInput; plan: PlanSummary; layout: ReleaseLayout }> {
    const dataDir = fs.mkdtempSync(path.join(root, 'data-'));
    const rel = ReleaseInputSchema.parse({
      releaseId: `ftp-faults-${++n}`,
      dataDir,
      source: { kind: 'pmc-legacy', baseUrl: `${ftp.url}/pub/pmc`, maxEntryBytes: 4096 * KB, connections: 2 },
      entrez: { enabled: false },
    });
    const plan = await planRelease(rel);
    ftp.transfers.length = 0;
    return { rel, plan, layout: new ReleaseLayout(dataDir, rel.releaseId) };
  }

  /** The article's nXML and images in the unit are the package's members, byte for byte, and nothing else. */
  function assertWhole(layout: ReleaseLayout, unitId: string, pmcid: string): void {
    const t = truth.get(pmcid)!;
    const unitDir = layout.unitDir(unitId);
    assert.equal(sha256(fs.readFileSync(path.join(unitDir, 'articles', `${pmcid}.1.xml`))), t.xml, `${pmcid} nXML`);
    const media = path.join(unitDir, 'media', `${pmcid}.1`);
    assert.deepEqual(fs.readdirSync(media).sort(), [...t.images.keys()].sort(), `${pmcid} images`);
    for (const [name, sha] of t.images)
      assert.equal(sha256(fs.readFileSync(path.join(media, name))), sha, `${pmcid}/${name}`);
  }

  /**
   * Nothing cut short was kept anywhere in the data dir: no temporary or staging file, every extracted file of every
   * article is its package's member byte for byte, every cache entry matches its md5, every package index lists
   * the package's members. `absent`: articles with nothing at all in place (no file, no sidecar, no cache index).
   */
  function assertNothingTruncated(layout: ReleaseLayout, absent: string[] = []): void {
    const files = (fs.readdirSync(layout.dataDir, { recursive: true }) as string[]).map(String);
    assert.deepEqual(
      files.filter((f) => /\.partial-|\.staging|\.part$/.test(f)),
      [],
      'no temporary file left',
    );
    for (const f of files) {
      const abs = path.join(layout.dataDir, f);
      if (!fs.statSync(abs).isFile()) continue;
      const placed = /units\/[^/]+\/(?:articles\/(PMC\d+)\.1\.xml|media\/(PMC\d+)\.1\/(.+))$/.exec(f);
      if (placed) {
        const pmcid = placed[1] ?? placed[2]!;
        assert.ok(!absent.includes(pmcid), `nothing of ${pmcid} is in place: ${f}`);
        const t = truth.get(pmcid)!;
        assert.equal(sha256(fs.readFileSync(abs)), placed[1] ? t.xml : t.images.get(placed[3]!), f);
      } else if (/cache\/objects\/[0-9a-f]{2}\/[0-9a-f]{32}$/.test(f)) {
        assert.equal(md5(fs.readFileSync(abs)), path.basename(f), f);
      } else if (/cache\/packages\/.*\.json$/.test(f) || /units\/[^/]+\/packages\/PMC\d+\.1\.json$/.test(f)) {
        const index = JSON.parse(fs.readFileSync(abs, 'utf8')) as {
          package: string;
          xml: { name: string } | null;
          images: { name: string }[];
        };
        const pmcid = path.basename(index.package, '.tar.gz');
        assert.ok(!absent.includes(pmcid), `no index of ${pmcid}: ${f}`);
        assert.deepEqual(index.images.map((i) => i.name).sort(), [...truth.get(pmcid)!.images.keys()].sort(), f);
      }
    }
  }

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'legacy-ftp-faults-'));
    await writeLegacyTree(path.join(root, 'pub', 'pmc'), specs);
    for (const p of specs) {
      const file = path.join(root, served(p.pmcid));
      const m = await members(file);
      const xml = [...m].find(([k]) => k.endsWith('.nxml'))!;
      const images = new Map(
        [...m].filter(([k]) => /\.(jpe?g|png|gif|tiff?)$/.test(k)).map(([k, v]) => [path.basename(k), sha256(v)]),
      );
      truth.set(p.pmcid, {
        pkg: sha256(fs.readFileSync(file)),
        bytes: fs.statSync(file).size,
        xml: sha256(xml[1]),
        images,
      });
    }
    ftp = await startFtpServer(root);
    // A stalled transfer fails after BIOMEDICA_FETCH_TIMEOUT_MS without progress (basic-ftp's data watchdog): 1 s here.
    tuning = setFetchTuning({ attempts: ATTEMPTS, backoffMs: 5, backoffMaxMs: 10, timeoutMs: STALL_TIMEOUT_MS });
  });
  afterEach(() => {
    ftp.faults.length = 0;
    ftp.refuseConnections = 0;
  });
  after(async () => {
    setFetchTuning(tuning);
    await ftp?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('the FTP transport', () => {
    let transport: LegacyTransport;
    before(() => {
      transport = openLegacyTransport({ baseUrl: `${ftp.url}/pub/pmc`, connections: 2 }, STALL_TIMEOUT_MS);
    });
    after(async () => transport?.close());

    /** Every package through the same transport at once (more than its 2 connections): each one byte-identical. */
    async function allWhole(t: LegacyTransport): Promise<void> {
      const got = await Promise.all(specs.map((p) => sha256Of(t.open(served(p.pmcid).slice('pub/pmc/'.length)))));
      assert.deepEqual(
        got,
        specs.map((p) => ({ sha: truth.get(p.pmcid)!.pkg, bytes: truth.get(p.pmcid)!.bytes })),
      );
    }

    /** The server holds no more control connections than the pool may keep (the failed ones were closed). */
    async function poolBounded(): Promise<void> {
      for (let i = 0; i < 100 && ftp.stats.open > 2; i++) await sleep(20);
      assert.ok(ftp.stats.open <= 2, `${ftp.stats.open} control connections open`);
    }

    const real = 'oa_package/ac/6a/PMC7112410.tar.gz';
    const cases: [string, FtpFault, (e: SourceError) => boolean][] = [
      [
        'data connection reset mid-file, then 551',
        { kind: 'drop', afterBytes: 600 * KB },
        (e) => e.kind === 'network' && /broke after it began: 551 .*reset after 614400 of|ECONNRESET/.test(e.message),
      ],
      [
        'data connection closed mid-file (FIN), then 551',
        { kind: 'drop', afterBytes: 600 * KB, how: 'close' },
        (e) => e.kind === 'network' && /broke after it began: 551 .*closed after 614400 of/.test(e.message),
      ],
      [
        'RETR answered 421, control connection closed',
        { kind: 'close' },
        (e) => e.kind === 'server' && /421 Service not available/.test(e.message),
      ],
      [
        'data connection stalled mid-file',
        { kind: 'stall', afterBytes: 400 * KB },
        (e) => e.kind === 'network' && /timed out: Timeout \(data socket\)/.test(e.message),
      ],
    ];
    for (const [what, fault, check] of cases) {
      it(`${what}: the stream errors (retryable, never a short end), and the same transport goes on`, async () => {
        ftp.faults.push({ match: `pub/pmc/${real}`, fault, times: 1 });
        const t0 = Date.now();
        await assert.rejects(
          sha256Of(transport.open(real)),
          (err: unknown) => err instanceof SourceError && err.retryable && check(err),
        );
        if (fault.kind === 'stall')
          assert.ok(
            Date.now() - t0 >= STALL_TIMEOUT_MS && Date.now() - t0 < 10 * STALL_TIMEOUT_MS,
            `gave up after ${Date.now() - t0} ms`,
          );
        assert.equal(ftp.faults[0]!.hits, 1);
        await allWhole(transport);
        await poolBounded();
      });
    }

    it('a connection refused with 421 at connect: retryable, and the next open connects again', async () => {
      const t = openLegacyTransport({ baseUrl: `${ftp.url}/pub/pmc`, connections: 2 }, STALL_TIMEOUT_MS);
      try {
        ftp.refuseConnections = 1;
        const refused = ftp.stats.refused;
        await assert.rejects(
          sha256Of(t.open(real)),
          (err: unknown) => err instanceof SourceError && err.retryable && /421 Too many connections/.test(err.message),
        );
        assert.equal(ftp.stats.refused, refused + 1);
        await allWhole(t);
      } finally {
        await t.close();
      }
      await poolBounded();
    });

    it('a refused login (530) fails as forbidden and leaves no control connection open', async () => {
      const t = openLegacyTransport(
        { baseUrl: `ftp://someone:secret@127.0.0.1:${ftp.port}/pub/pmc`, connections: 2 },
        STALL_TIMEOUT_MS,
      );
      try {
        const open = ftp.stats.open;
        await assert.rejects(
          t.open(real),
          (err: unknown) =>
            err instanceof SourceError && err.kind === 'forbidden' && !err.retryable && /530/.test(err.message),
        );
        for (let i = 0; i < 100 && ftp.stats.open > open; i++) await sleep(20);
        assert.equal(ftp.stats.open, open, 'the refused connection was closed');
      } finally {
        await t.close();
      }
    });

    it('a transfer waiting in line for a connection leaves it at once when cancelled, and the line goes on', async () => {
      const t = openLegacyTransport({ baseUrl: `${ftp.url}/pub/pmc`, connections: 1 }, STALL_TIMEOUT_MS);
      try {
        // The only connection is held by a transfer that stalls until the data watchdog ends it (1 s).
        ftp.transfers.length = 0;
        ftp.faults.push({ match: `pub/pmc/${real}`, fault: { kind: 'stall', afterBytes: 0 }, times: 1 });
        let holderSettled = false;
        const holder = sha256Of(t.open(real))
          .then(
            () => 'whole',
            (e: Error) => e.message,
          )
          .finally(() => (holderSettled = true));
        await sleep(100);
        const cancel = new AbortController();
        const waiting = t.open(served('PMC9100001').slice('pub/pmc/'.length), cancel.signal);
        const third = sha256Of(t.open(served('PMC9100002').slice('pub/pmc/'.length)));
        setTimeout(() => cancel.abort(new Error('activity cancelled')), 50);
        await assert.rejects(waiting, /activity cancelled/);
        assert.equal(holderSettled, false, 'left the line while the connection was still held');
        assert.match(await holder, /Timeout \(data socket\)/);
        // The slot the cancelled waiter gave up went to the next in line, and the pool is whole afterwards.
        assert.equal((await third).sha, truth.get('PMC9100002')!.pkg);
        await assert.rejects(t.open(real, AbortSignal.abort(new Error('cancelled before'))), /cancelled before/);
        await allWhole(t);
        assert.equal(
          ftp.transfers.filter((x) => x.path === served('PMC9100001')).length,
          1,
          'the cancelled one never transferred; allWhole did once',
        );
      } finally {
        await t.close();
      }
    });

    it('a pooled connection the server closed while idle (421, ftp-srv idle timeout) is never reused', async () => {
      const idle = await startFtpServer(root, { idleTimeoutMs: 1_000 });
      const t = openLegacyTransport({ baseUrl: `${idle.url}/pub/pmc`, connections: 2 }, STALL_TIMEOUT_MS);
      try {
        const small = served('PMC9100001').slice('pub/pmc/'.length);
        assert.equal((await sha256Of(t.open(small))).sha, truth.get('PMC9100001')!.pkg);
        assert.equal(idle.stats.open, 1, 'kept in the pool');
        for (let i = 0; i < 250 && idle.stats.open > 0; i++) await sleep(20);
        assert.equal(idle.stats.open, 0, 'closed by the server');
        await sleep(100);
        assert.equal((await sha256Of(t.open(small))).sha, truth.get('PMC9100001')!.pkg);
        assert.equal(idle.stats.connects, 2);
      } finally {
        await t.close();
        await idle.close();
      }
    });
  });

  describe('the fetch stage (retries inside the activity, then Temporal)', () => {
    async function fetchAll(rel: ReleaseInput, plan: PlanSummary): Promise<void> {
      for (const id of unitIds(plan)) await fetchArticles({ release: rel, unitId: id });
    }
    const unitOf = (pmcid: string) =>
      pmcid === 'PMC7112410' ? 'other-000000' : pmcid === 'PMC9100009' ? 'noncommercial-000000' : 'commercial-000000';
    function assertAllWhole(layout: ReleaseLayout): void {
      for (const p of specs) assertWhole(layout, unitOf(p.pmcid), p.pmcid);
      assertNothingTruncated(layout);
    }

    it('retries packages whose data connection dropped mid-file, and keeps only the whole ones', async () => {
      const { rel, plan, layout } = await freshRelease();
      ftp.faults.push(
        { match: served('PMC7112410'), fault: { kind: 'drop', afterBytes: 700 * KB }, times: 1 },
        { match: served('PMC9100002'), fault: { kind: 'drop', afterBytes: 100 * KB, how: 'close' }, times: 2 },
        { match: served('PMC9100009'), fault: { kind: 'drop', afterBytes: 1 }, times: 1 },
      );
      await fetchAll(rel, plan);
      assert.deepEqual(attempts('PMC7112410'), ['drop', 'whole']);
      assert.deepEqual(attempts('PMC9100002'), ['drop', 'drop', 'whole']);
      assert.deepEqual(attempts('PMC9100009'), ['drop', 'whole']);
      assert.deepEqual(await quarantineOf(layout, unitIds(plan)), []);
      assertAllWhole(layout);
    });

    it('retries packages whose RETR was answered 421 and whose connection was closed, or refused at connect', async () => {
      const { rel, plan, layout } = await freshRelease();
      ftp.faults.push(
        { match: served('PMC7112410'), fault: { kind: 'close' }, times: 1 },
        { match: served('PMC9100003'), fault: { kind: 'close' }, times: 2 },
      );
      for (const id of unitIds(plan).filter((u) => u !== unitOf('PMC9100009')))
        await fetchArticles({ release: rel, unitId: id });
      // The unit of one package, alone on the server: its first two connections are refused (with several packages
      // in flight, which one meets a refusal would be a race).
      ftp.refuseConnections = 2;
      const refused = ftp.stats.refused;
      await fetchArticles({ release: rel, unitId: unitOf('PMC9100009') });
      assert.equal(ftp.stats.refused, refused + 2);
      assert.deepEqual(attempts('PMC9100009'), ['whole'], 'refused at connect: no transfer began');
      assert.deepEqual(attempts('PMC7112410'), ['close', 'whole']);
      assert.deepEqual(attempts('PMC9100003'), ['close', 'close', 'whole']);
      assert.deepEqual(await quarantineOf(layout, unitIds(plan)), []);
      assertAllWhole(layout);
    });

    it(`gives up on a stalled data connection after BIOMEDICA_FETCH_TIMEOUT_MS (${STALL_TIMEOUT_MS} ms here) and retries`, async () => {
      const { rel, plan, layout } = await freshRelease();
      ftp.faults.push(
        { match: served('PMC7112410'), fault: { kind: 'stall', afterBytes: 500 * KB }, times: 1 },
        { match: served('PMC9100004'), fault: { kind: 'stall', afterBytes: 0 }, times: 1 },
      );
      const t0 = Date.now();
      await fetchAll(rel, plan);
      assert.ok(Date.now() - t0 < 20 * STALL_TIMEOUT_MS, `took ${Date.now() - t0} ms`);
      assert.deepEqual(attempts('PMC7112410'), ['stall', 'whole']);
      assert.deepEqual(attempts('PMC9100004'), ['stall', 'whole']);
      assertAllWhole(layout);
    });

    it('a package whose every attempt breaks: the retryable error escapes for Temporal (nothing of it kept), and the next attempt completes', async () => {
      const { rel, layout } = await freshRelease();
      const unitId = 'noncommercial-000000';
      const faults: [FtpFault, RegExp][] = [
        [{ kind: 'drop', afterBytes: 50 * KB }, /broke after it began|ECONNRESET/],
        [{ kind: 'close' }, /421 Service not available/],
        [{ kind: 'stall', afterBytes: 50 * KB }, /Timeout \(data socket\)/],
      ];
      for (const [fault, why] of faults) {
        ftp.faults.splice(0, ftp.faults.length, { match: served('PMC9100009'), fault });
        ftp.transfers.length = 0;
        await assert.rejects(
          fetchArticles({ release: rel, unitId }),
          (err: unknown) => err instanceof SourceError && err.retryable && why.test(err.message),
          fault.kind,
        );
        assert.deepEqual(
          attempts('PMC9100009'),
          Array(ATTEMPTS).fill(fault.kind),
          `${fault.kind}: every try inside the activity`,
        );
        assert.ok(!fs.existsSync(layout.stageManifest(unitId, 'fetch')), 'the stage is not recorded as done');
        assertNothingTruncated(layout, ['PMC9100009']);
      }
      // Temporal's next attempt, the mirror healthy again.
      ftp.faults.length = 0;
      ftp.transfers.length = 0;
      const r = await fetchArticles({ release: rel, unitId });
      assert.deepEqual([r.fetched, r.failed, r.quarantined], [1, 0, 0]);
      assert.deepEqual(attempts('PMC9100009'), ['whole']);
      assertWhole(layout, unitId, 'PMC9100009');
      assertNothingTruncated(layout);
    });

    it('a short package answered 226 (reported whole) is never kept: retried, and quarantined xml-checksum when it stays short', async () => {
      const { rel, plan, layout } = await freshRelease();
      ftp.faults.push(
        { match: served('PMC9100001'), fault: { kind: 'truncate', keepBytes: 90 * KB }, times: 1 },
        { match: served('PMC9100009'), fault: { kind: 'truncate' } },
      );
      await fetchAll(rel, plan);
      assert.deepEqual(attempts('PMC9100001'), ['truncate', 'whole']);
      assert.deepEqual(attempts('PMC9100009'), Array(ATTEMPTS).fill('truncate'));
      const q = await quarantineOf(layout, unitIds(plan));
      assert.deepEqual(
        q.map((r) => [r.article, r.reason]),
        [['PMC9100009.1', 'xml-checksum']],
      );
      assert.match(q[0]!.detail, /package .*PMC9100009\.tar\.gz is damaged: (gzip: unexpected end of file|tar: )/);
      for (const p of specs) if (p.pmcid !== 'PMC9100009') assertWhole(layout, unitOf(p.pmcid), p.pmcid);
      assertNothingTruncated(layout, ['PMC9100009']);
    });
  });
});
