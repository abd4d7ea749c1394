import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { fixturePaths } from '../config/paths';
import { DirPmcSource, parseObjectUrl } from '../activities/fetch/source';
import { licenseGroup } from '../activities/plan/license';
import { latestInventoryManifest, parseCsvLine, readInventory, type InventoryRow } from '../activities/plan/plan';
import { buildSampleMirror, graphicHrefs, type BuiltMirror } from '../sample/build-mirror';
import { parseJats } from '../activities/parse/jats';

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const IMAGE_EXT = /\.(jpe?g|png|gif|tiff?)$/i;
const FORMAT_OF_EXT: Record<string, string> = {
  jpg: 'jpeg',
  jpeg: 'jpeg',
  png: 'png',
  gif: 'gif',
  tif: 'tiff',
  tiff: 'tiff',
};
const INVENTORY_DIR = 'inventory-reports/pmc-oa-opendata/metadata';

interface Meta {
  pmcid: string;
  version: number;
  pmid: number | null;
  doi: string | null;
  title: string | null;
  citation: string;
  is_pmc_openaccess: boolean;
  is_retracted: boolean;
  license_code: string | null;
  xml_url: string;
  text_url: string;
  media_urls: string[];
}

/** Every file under dir, relative, with its sha256 and mtime. */
function snapshot(dir: string): Map<string, { sha: string; mtimeMs: number }> {
  const out = new Map<string, { sha: string; mtimeMs: number }>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.posix.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else
        out.set(r, {
          sha: sha256(fs.readFileSync(path.join(dir, r))),
          mtimeMs: fs.statSync(path.join(dir, r)).mtimeMs,
        });
    }
  };
  walk('');
  return out;
}

/** The fixture files, by PMCID (file names start with the PMCID). */
const fixtureFiles = (): Map<string, string> =>
  new Map(
    fs
      .readdirSync(fixturePaths.nxml())
      .filter((f) => /\.n?xml$/.test(f))
      .map((f) => [/^(PMC\d+)/.exec(f)![1]!, path.join(fixturePaths.nxml(), f)]),
  );

let tmp: string;
let out: string;
let built: BuiltMirror;
let metas: Meta[];

before(async function () {
  this.timeout(120_000);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sample-mirror-test-'));
  out = path.join(tmp, 'mirror');
  built = await buildSampleMirror({ nxmlDir: fixturePaths.nxml(), imagesDir: fixturePaths.images(), outDir: out });
  metas = fs
    .readdirSync(path.join(out, 'metadata'))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(out, 'metadata', f), 'utf8')) as Meta);
});
after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('buildSampleMirror on the real fixture articles', () => {
  it('lays out one PMC<id>.<ver>/ folder per fixture article with the XML byte for byte, the JSON and the TXT', () => {
    const fixtures = fixtureFiles();
    assert.equal(built.articles, fixtures.size);
    const dirs = fs.readdirSync(out).filter((d) => /^PMC\d+\.\d+$/.test(d));
    assert.equal(dirs.length, fixtures.size);
    for (const d of dirs) {
      const pmcid = d.split('.')[0]!;
      assert.ok(fixtures.has(pmcid), d);
      const xml = fs.readFileSync(path.join(out, d, `${d}.xml`));
      assert.ok(xml.equals(fs.readFileSync(fixtures.get(pmcid)!)), `${d}.xml is the fixture file`);
      assert.ok(fs.statSync(path.join(out, d, `${d}.json`)).isFile(), `${d}.json`);
      const txt = fs.readFileSync(path.join(out, d, `${d}.txt`), 'utf8');
      assert.ok(txt.startsWith(`ARTICLE INFORMATION\n====\nPMCID: ${pmcid}\n`), `${d}.txt`);
    }
    assert.ok(fs.existsSync(path.join(out, 'README.txt')));
  });

  it('keeps a byte-identical copy of each version JSON under metadata/', () => {
    const files = fs.readdirSync(path.join(out, 'metadata')).sort();
    assert.equal(files.length, built.articles);
    for (const f of files) {
      const prefix = f.replace(/\.json$/, '');
      const copy = fs.readFileSync(path.join(out, 'metadata', f));
      assert.ok(copy.equals(fs.readFileSync(path.join(out, prefix, f))), f);
      const m = JSON.parse(copy.toString('utf8')) as Meta;
      assert.equal(`${m.pmcid}.${m.version}`, prefix);
      assert.equal(m.is_pmc_openaccess, true);
      assert.equal(m.is_retracted, false);
    }
  });

  it('puts the real md5 of every object in its URL, and every URL points into the article folder', () => {
    let objects = 0;
    for (const m of metas) {
      const prefix = `${m.pmcid}.${m.version}`;
      for (const url of [m.xml_url, m.text_url, ...m.media_urls]) {
        assert.ok(url.startsWith(`s3://pmc-oa-opendata/${prefix}/`), url);
        const { key, md5: sum } = parseObjectUrl(url);
        assert.match(sum ?? '', /^[0-9a-f]{32}$/, url);
        assert.equal(md5(fs.readFileSync(path.join(out, key))), sum, url);
        objects++;
      }
    }
    assert.equal(objects, built.articles * 2 + built.mediaFiles);
  });

  it('derives metadata from the article itself (PMC7159286: pmid, doi, citation from <article-meta>, no CC license)', () => {
    const m = metas.find((x) => x.pmcid === 'PMC7159286')!;
    assert.equal(m.version, 1);
    assert.equal(m.pmid, 31986261);
    assert.equal(m.doi, '10.1016/S0140-6736(20)30154-9');
    assert.equal(
      m.title,
      'A familial cluster of pneumonia associated with the 2019 novel coronavirus indicating person-to-person transmission: a study of a family cluster',
    );
    assert.equal(m.citation, 'Lancet. 2020 Jan 24;395(10223):514-523. doi: 10.1016/S0140-6736(20)30154-9');
    assert.equal(m.license_code, null);
  });

  it("takes the citation's pages from the article, not from its reference list (eLife: elocation e56337)", () => {
    const m = metas.find((x) => x.pmcid === 'PMC7289599')!;
    assert.equal(m.citation, 'Elife. 2020 Jun 1;9:e56337. doi: 10.7554/eLife.56337');
    assert.equal(m.license_code, 'CC0');
    assert.equal(
      metas.find((x) => x.pmcid === 'PMC1790863')!.citation,
      'PLoS ONE. 2007 Feb 14;2(2):e217. doi: 10.1371/journal.pone.0000217',
    );
  });

  it('names media files after the graphic hrefs, keeping an href extension and adding one where the href has none', () => {
    assert.deepEqual(graphicHrefs(fs.readFileSync(fixtureFiles().get('PMC7159286')!, 'utf8')), [
      'gr1_lrg',
      'gr2_lrg',
      'gr3a_lrg',
      'gr3b_lrg',
      'gr4_lrg',
    ]);
    for (const m of metas) {
      const prefix = `${m.pmcid}.${m.version}`;
      const hrefs = graphicHrefs(fs.readFileSync(path.join(out, prefix, `${prefix}.xml`), 'utf8'));
      const names = m.media_urls.map((u) => path.posix.basename(parseObjectUrl(u).key));
      const onDisk = fs
        .readdirSync(path.join(out, prefix))
        .filter((f) => !f.startsWith(`${prefix}.`))
        .sort();
      assert.deepEqual([...names].sort(), onDisk, `${prefix}: media_urls list exactly the media files`);
      const stems = new Set(hrefs.map((h) => h.replace(IMAGE_EXT, '')));
      for (const n of names) assert.ok(stems.has(n.replace(IMAGE_EXT, '')), `${prefix}/${n} is named after an href`);
      for (const h of hrefs) {
        if (IMAGE_EXT.test(h)) assert.ok(names.includes(h), `${prefix}: ${h} kept as is`);
        else
          assert.ok(
            names.some((n) => n.replace(IMAGE_EXT, '') === h && IMAGE_EXT.test(n)),
            `${prefix}: a file for ${h}`,
          );
      }
    }
  });

  it('uses the real PMC7159286 images byte for byte, the .gif thumbnail included', () => {
    const real = fs.readdirSync(path.join(fixturePaths.images(), 'PMC7159286')).sort();
    assert.deepEqual(real, [
      'gr1_lrg.gif',
      'gr1_lrg.jpg',
      'gr2_lrg.jpg',
      'gr3a_lrg.jpg',
      'gr3b_lrg.jpg',
      'gr4_lrg.jpg',
    ]);
    for (const f of real) {
      assert.ok(
        fs
          .readFileSync(path.join(out, 'PMC7159286.1', f))
          .equals(fs.readFileSync(path.join(fixturePaths.images(), 'PMC7159286', f))),
        f,
      );
    }
    const m = metas.find((x) => x.pmcid === 'PMC7159286')!;
    assert.deepEqual(
      m.media_urls.map((u) => parseObjectUrl(u).key),
      real.map((f) => `PMC7159286.1/${f}`),
    );
    assert.equal(built.realImages, 6);
  });

  it('generates images that decode with sharp in the format their extension names', async () => {
    const seen = new Set<string>();
    let decoded = 0;
    for (const m of metas) {
      for (const u of m.media_urls) {
        const key = parseObjectUrl(u).key;
        const ext = IMAGE_EXT.exec(key)![1]!.toLowerCase();
        const img = sharp(fs.readFileSync(path.join(out, key)));
        const meta = await img.metadata();
        assert.equal(meta.format, FORMAT_OF_EXT[ext], key);
        const { info } = await img.raw().toBuffer({ resolveWithObject: true });
        assert.ok(info.width > 20 && info.height > 20, key);
        seen.add(ext);
        decoded++;
      }
    }
    assert.equal(decoded, built.mediaFiles);
    assert.equal(built.generatedImages + built.realImages, built.mediaFiles);
    for (const ext of ['jpg', 'png', 'gif', 'tif']) assert.ok(seen.has(ext), `some .${ext}`);
  });

  it('writes a real-shaped S3 inventory listing every metadata JSON with its md5 as ETag', async () => {
    assert.equal(built.inventoryManifestKey, `${INVENTORY_DIR}/2026-11-01T01-00Z/manifest.json`);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, built.inventoryManifestKey), 'utf8')) as {
      sourceBucket: string;
      fileFormat: string;
      fileSchema: string;
      files: { key: string; size: number; MD5checksum: string }[];
    };
    assert.equal(manifest.sourceBucket, 'pmc-oa-opendata');
    assert.equal(manifest.fileFormat, 'CSV');
    assert.equal(manifest.fileSchema, 'Bucket, Key, LastModifiedDate, ETag');
    assert.equal(manifest.files.length, 1);
    const file = manifest.files[0]!;
    assert.match(
      file.key,
      new RegExp(`^${INVENTORY_DIR}/data/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\.csv\\.gz$`),
    );
    const gz = fs.readFileSync(path.join(out, file.key));
    assert.equal(file.size, gz.length);
    assert.equal(file.MD5checksum, md5(gz));

    const rows = gunzipSync(gz).toString('utf8').split('\n').filter(Boolean).map(parseCsvLine);
    const metadataFiles = fs.readdirSync(path.join(out, 'metadata')).sort();
    assert.deepEqual(
      rows.map((r) => r[1]).sort(),
      metadataFiles.map((f) => `metadata/${f}`),
    );
    for (const [bucket, key, modified, etag] of rows) {
      assert.equal(bucket, 'pmc-oa-opendata');
      assert.equal(modified, '2026-11-01T00:00:00.000Z');
      assert.equal(etag, md5(fs.readFileSync(path.join(out, key!))), key);
    }

    // And the planner reads it back through a DirPmcSource.
    const source = new DirPmcSource(out);
    assert.equal(await latestInventoryManifest(source), built.inventoryManifestKey);
    const read: InventoryRow[] = [];
    for await (const r of readInventory(source, built.inventoryManifestKey)) read.push(r);
    assert.deepEqual(
      read.map((r) => [r.key, r.etag]),
      rows.map((r) => [r[1], r[3]]),
    );
  });

  it('puts articles in each license subset (commercial, noncommercial, other)', () => {
    const bySubset = new Map<string, string[]>();
    for (const m of metas)
      bySubset.set(licenseGroup(m.license_code), [...(bySubset.get(licenseGroup(m.license_code)) ?? []), m.pmcid]);
    assert.deepEqual([...bySubset.keys()].sort(), ['commercial', 'noncommercial', 'other']);
    // Checked against each fixture's <license>: by/2.0, by-nc/3.0, and Elsevier's COVID-19 text (no CC license).
    assert.equal(metas.find((m) => m.pmcid === 'PMC2329613')!.license_code, 'CC BY');
    assert.equal(metas.find((m) => m.pmcid === 'PMC3357053')!.license_code, 'CC BY-NC');
    assert.ok(bySubset.get('commercial')!.includes('PMC2329613'));
    assert.ok(bySubset.get('noncommercial')!.includes('PMC3357053'));
    assert.ok(bySubset.get('other')!.includes('PMC7159286'));
  });
});

describe('buildSampleMirror with hostile hrefs', () => {
  it("names media by the href's last segment: an href with ../ or a folder never writes outside the mirror", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-hrefs-'));
    try {
      const nxmlDir = path.join(root, 'nxml');
      fs.mkdirSync(nxmlDir);
      const figs = ['../../escaped', 'sub/dir/inner', '..\\back', '..']
        .map((h, i) => `<fig id="f${i}"><caption><p>Figure ${i}.</p></caption><graphic xlink:href="${h}"/></fig>`)
        .join('');
      fs.writeFileSync(
        path.join(nxmlDir, 'PMC9500001.xml'),
        `<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta><article-id pub-id-type="pmc">9500001</article-id>` +
          `<title-group><article-title>Hrefs</article-title></title-group></article-meta></front><body><sec>${figs}</sec></body></article>`,
      );
      const outDir = path.join(root, 'out', 'mirror');
      await buildSampleMirror({ nxmlDir, outDir });
      const outside = fs
        .readdirSync(root, { recursive: true })
        .map(String)
        .filter((f) => !f.startsWith('out') && !f.startsWith('nxml'));
      assert.deepEqual(outside, []);
      assert.deepEqual(fs.readdirSync(path.join(root, 'out')), ['mirror']);
      const media = fs
        .readdirSync(path.join(outDir, 'PMC9500001.1'))
        .filter((f) => !f.startsWith('PMC9500001.1.'))
        .map((f) => f.replace(/\.\w+$/, ''))
        .sort();
      assert.deepEqual(media, ['back', 'escaped', 'inner']);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('buildSampleMirror with publisher faults', () => {
  // A few fixture articles, linked (not copied) into a temp folder: PMC1790863 comes first and gets the corrupt image.
  const PICK = [
    'PMC1790863_pone.0000217.nxml',
    'PMC2599765_ehp-116-1694.nxml',
    'PMC3357053.nxml',
    'PMC7159286_main.nxml',
  ];
  let nxmlDir: string;
  let faultsOut: string;
  let faulty: BuiltMirror;
  before(async function () {
    this.timeout(60_000);
    nxmlDir = path.join(tmp, 'nxml-subset');
    fs.mkdirSync(nxmlDir);
    for (const f of PICK) fs.symlinkSync(path.join(fixturePaths.nxml(), f), path.join(nxmlDir, f));
    faultsOut = path.join(tmp, 'faulty');
    faulty = await buildSampleMirror({
      nxmlDir,
      imagesDir: fixturePaths.images(),
      outDir: faultsOut,
      faults: { corruptImages: 1, missingImages: 1 },
    });
  });

  const metaOf = (key: string): Meta => {
    const prefix = key.split('/')[0]!;
    return JSON.parse(fs.readFileSync(path.join(faultsOut, 'metadata', `${prefix}.json`), 'utf8')) as Meta;
  };

  it('truncates one figure image: the metadata md5 matches the broken bytes and sharp cannot decode it', async () => {
    assert.equal(faulty.faults.corrupt.length, 1);
    const key = faulty.faults.corrupt[0]!;
    assert.ok(key.startsWith('PMC1790863.1/'), key);
    const bytes = fs.readFileSync(path.join(faultsOut, key));
    const url = metaOf(key)
      .media_urls.map(parseObjectUrl)
      .find((u) => u.key === key);
    assert.ok(url, `${key} is listed`);
    assert.equal(url.md5, md5(bytes));
    // A third of the image the clean build generated for the same href.
    const clean = fs.readFileSync(path.join(out, key));
    assert.equal(bytes.length, Math.floor(clean.length / 3));
    assert.ok(clean.subarray(0, bytes.length).equals(bytes));
    await assert.rejects(sharp(bytes).raw().toBuffer());
  });

  it('leaves one figure image out of the bucket while the metadata still lists it', () => {
    assert.equal(faulty.faults.missing.length, 1);
    const key = faulty.faults.missing[0]!;
    assert.ok(!key.startsWith('PMC1790863.1/'), 'not in the article that already has the corrupt image');
    assert.ok(!fs.existsSync(path.join(faultsOut, key)), `${key} is absent`);
    const listed = metaOf(key)
      .media_urls.map(parseObjectUrl)
      .find((u) => u.key === key);
    assert.ok(listed, `${key} is in media_urls`);
    // Its md5 is that of the image a clean build serves.
    assert.equal(listed.md5, md5(fs.readFileSync(path.join(out, key))));
  });

  it('changes no file when built again into the same folder', async () => {
    const first = snapshot(faultsOut);
    assert.ok(first.size > 40, `${first.size} files`);
    const again = await buildSampleMirror({
      nxmlDir,
      imagesDir: fixturePaths.images(),
      outDir: faultsOut,
      faults: { corruptImages: 1, missingImages: 1 },
    });
    assert.deepEqual(again, faulty);
    assert.deepEqual(snapshot(faultsOut), first);
  });
});

describe("buildSampleMirror with the project's own articles (issue 15 cases no real fixture has)", function () {
  this.timeout(120_000);
  let dir: string;
  let mirror: BuiltMirror;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sample-mirror-synthetic-'));
    fs.mkdirSync(path.join(dir, 'none'));
    mirror = await buildSampleMirror({
      nxmlDir: path.join(dir, 'none'),
      outDir: path.join(dir, 'mirror'),
      synthetic: true,
    });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const record = (n: number, opts: { tableCellMentions?: boolean } = {}) =>
    parseJats(fs.readFileSync(path.join(dir, 'mirror', `PMC9000000${n}.1`, `PMC9000000${n}.1.xml`)), opts);

  it('lays them out like any article: XML, metadata with PMID and licence, generated images for every graphic', async () => {
    assert.equal(mirror.articles, 2);
    assert.equal(mirror.generatedImages, 8);
    for (const [n, license] of [
      [1, 'CC BY'],
      [2, 'CC BY-NC'],
    ] as const) {
      const meta = JSON.parse(
        fs.readFileSync(path.join(dir, 'mirror', 'metadata', `PMC9000000${n}.1.json`), 'utf8'),
      ) as Meta & { pmid: number; license_code: string };
      assert.equal(meta.pmid, 99000000 + n);
      assert.equal(meta.license_code, license);
      const names = meta.media_urls
        .map((u) => path.posix.basename(parseObjectUrl(u).key))
        .map((f) => f.replace(/\..*$/, ''));
      assert.deepEqual(names.sort(), [`ga${n}`, 'f1', 'f2', 'f3'].sort());
      for (const u of meta.media_urls) {
        const file = path.join(dir, 'mirror', parseObjectUrl(u).key);
        const { width } = await sharp(fs.readFileSync(file)).metadata();
        assert.ok((width ?? 0) > 0, `${file} decodes`);
      }
    }
  });

  it('their XML exercises every case: MathML in a caption and in the text, a formula outside <p>, title, range, table row, graphical abstract, contributors', () => {
    const r = record(1);
    const fig = (id: string) => r.figures.find((f) => f.id === id)!;
    assert.match(fig('f1').caption, /the fitted curve is S = C\/M \+ A\/N with k0 from k_obs = k_0 e\^\(−E_a\/RT\)\.$/);
    assert.equal(fig('f1').mathml.length, 2);
    assert.ok(r.fullText.split('\n\n').includes('(1) log CV = −0.5 log Frequency + 2'));
    assert.equal(
      r.abstract,
      'Growth follows S = C/M + A/N in every condition, with rate constants k_obs = k_0 e^(−E_a/RT) fitted per well.',
    );
    assert.deepEqual(fig('f2').mentions, [
      'Growth curves in [[Figure 2]]',
      'We measured growth in 12 cultures. The whole time course is shown in [[Figs 1–3]], and the fitted model is S = C/M + A/N.',
    ]);
    assert.equal(fig('ga1').role, 'graphical-abstract');
    assert.equal(
      fig('ga1').caption,
      'Cells grow along the fitted curve; the rate constants are summarised in one panel.',
    );
    assert.ok(!fig('f3').mentions.includes('Rate constants [[Fig. 3]]'));
    const opted = record(1, { tableCellMentions: true }).figures.find((f) => f.id === 'f3')!;
    assert.ok(opted.mentions.includes('Rate constants [[Fig. 3]]'));
    const xml = fs.readFileSync(path.join(dir, 'mirror', 'PMC90000001.1', 'PMC90000001.1.xml'), 'utf8');
    assert.match(xml, /<contrib contrib-type="author" corresp="yes"><contrib-id contrib-id-type="orcid">/);
    assert.equal((xml.match(/<aff id=/g) ?? []).length, 2);
    assert.equal(record(2).license.code, 'CC BY-NC');
  });
});
