/**
 * A bucket mirror in PMC's layout that holds, beside good articles, one article for each way a publisher's (or an
 * attacker's) input has hurt a release: media keys that climb out of their folder or point into another article's,
 * a checksum that is not an md5, an article too large for any shard (by bytes and by samples), characters XML
 * forbids in a caption and a title, an SVG and a too-tall image under image names, and versions the plan excludes.
 *
 * The good articles are real (the sample builder run on a few of ../shared/fixtures/real/nxml, read in place);
 * the hostile ones are synthetic JATS written here, with images made by sharp. `HOSTILE_CASES` lists what the
 * release must record for each, exactly once.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import sharp from 'sharp';
import { fixturePaths } from '../../config/paths';
import { buildSampleMirror, inventoryRow, syntheticImage, writeInventory } from '../../sample/build-mirror';

const BUCKET = 's3://pmc-oa-opendata';

/** Real articles that keep the release honest: their figures must all come out, with their own images. */
export const GOOD_REAL_ARTICLES = ['PMC3585041', 'PMC7159286', 'PMC7289444', 'PMC12505609', 'PMC12561574'];

/** The release's shard limits for this mirror: small, so one article can be too large for a shard. */
export const HOSTILE_SHARD_LIMITS = { maxBytes: 2_000_000, maxSamples: 12 };

export interface ExpectedRecord {
  article: string;
  figure: string | null;
  stage: string;
  reason: string;
}

/** Exactly these records, once each, and no other record for these articles. */
export const HOSTILE_CASES: ExpectedRecord[] = [
  { article: 'PMC9400001.1', figure: 'PMC9400001_1_000', stage: 'plan', reason: 'unsafe-media-key' },
  { article: 'PMC9400002.1', figure: 'PMC9400002_1_000', stage: 'plan', reason: 'unsafe-media-key' },
  { article: 'PMC9400002.1', figure: 'PMC9400002_1_001', stage: 'plan', reason: 'foreign-media-key' },
  { article: 'PMC9400004.1', figure: 'PMC9400004_1_000', stage: 'plan', reason: 'bad-media-md5' },
  { article: 'PMC9400005.1', figure: null, stage: 'shard', reason: 'too-large' },
  { article: 'PMC9400006.1', figure: null, stage: 'shard', reason: 'too-large' },
  { article: 'PMC9400008.1', figure: 'PMC9400008_1_000', stage: 'images', reason: 'unsupported-format' },
  { article: 'PMC9400008.1', figure: 'PMC9400008_1_001', stage: 'images', reason: 'too-large' },
  { article: 'PMC9400009.1', figure: null, stage: 'plan', reason: 'not-open-access' },
  { article: 'PMC9400010.1', figure: null, stage: 'plan', reason: 'bad-metadata' },
];

/** Published after repair: characters XML forbids removed, one warning. */
export const REPAIRED_ARTICLE = 'PMC9400007.1';

/** Two good articles whose images together pass the shard's byte limit: their unit writes two shard files. */
export const SPLIT_ARTICLES = ['PMC9400011.1', 'PMC9400012.1'];

/** A file the escaping key would name if it were ever resolved against a unit's media folder or the data dir. */
export const ESCAPE_NAME = 'escaped-fig1.jpg';

interface HostileFigure {
  href: string;
  caption: string;
  /** The media URL's key (default `<article>/<href>`), and the md5 in it (default: the file's). */
  key?: string;
  md5?: string;
  /** The file in the bucket, under `<article>/<href>` unless `at` names another key (incompressible noise when absent). */
  body?: Buffer;
  at?: string;
  /** No file of this article's own for this figure. */
  noFile?: true;
}

interface HostileArticle {
  pmcid: string;
  title: string;
  license: string;
  figures: HostileFigure[];
  /** Metadata overrides (is_pmc_openaccess, xml_url...). */
  meta?: Record<string, unknown>;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function jats(a: HostileArticle): string {
  const figs = a.figures
    .map(
      (f, i) =>
        `<fig id="f${i + 1}"><label>Figure ${i + 1}</label><caption><p>${xmlEscape(f.caption)}</p></caption><graphic xlink:href="${xmlEscape(f.href)}"/></fig>`,
    )
    .join('\n');
  const refs = a.figures.map((_, i) => `<xref ref-type="fig" rid="f${i + 1}">Figure ${i + 1}</xref>`).join(', ');
  return `<?xml version="1.0" encoding="UTF-8"?>
<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front><journal-meta><journal-title-group><journal-title>Journal of Hostile Input</journal-title></journal-title-group><issn pub-type="epub">0000-0000</issn></journal-meta><article-meta><article-id pub-id-type="pmc">${a.pmcid.slice(3)}</article-id><title-group><article-title>${xmlEscape(a.title)}</article-title></title-group><pub-date pub-type="epub"><day>2</day><month>6</month><year>2026</year></pub-date><permissions><license license-type="open-access"><license-p>${a.license}</license-p></license></permissions><abstract><p>An article written to test one way input can hurt a release.</p></abstract></article-meta></front><body><sec><title>Results</title><p>The data are in ${refs || 'the text'}.</p>
${figs}
</sec></body></article>
`;
}

/** Deterministic noise: a JPEG of this size does not compress, so a few of them pass the shard's byte limit. */
async function noiseJpeg(seed: string, width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < raw.length; i += 32) {
    block.copy(raw, i, 0, Math.min(32, raw.length - i));
    block = createHash('sha256').update(block).digest();
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

async function hostileArticles(): Promise<HostileArticle[]> {
  const small = (pmcid: string, href: string) => syntheticImage(pmcid, href, 'jpg');
  const victimFig1 = await small('PMC9400003', 'fig1');
  const victimShared = await small('PMC9400003', 'shared');
  return [
    {
      // 1. a media key that climbs out of media/ (and out of the bucket): refused at plan, never retried
      pmcid: 'PMC9400001',
      title: 'A media key that climbs out of its folder',
      license: 'CC BY',
      figures: [
        {
          href: 'escaped-fig1',
          caption: 'Figure whose only media key escapes.',
          key: `PMC9400001.1/../../${ESCAPE_NAME}`,
          md5: md5(victimFig1),
          body: victimFig1,
          at: 'PMC9400001.1/unlisted.jpg',
        },
        { href: 'fig2', caption: 'A good figure beside it.', body: await small('PMC9400001', 'fig2') },
      ],
    },
    {
      // 2. article X's keys name article Y's files, through `..` and directly: X must never publish Y's image
      pmcid: 'PMC9400002',
      title: 'An article whose keys point into another article',
      license: 'CC BY',
      figures: [
        {
          href: 'fig1',
          caption: 'X figure 1 (would be Y fig1).',
          key: 'PMC9400002.1/../PMC9400003.1/fig1.jpg',
          md5: md5(victimFig1),
          noFile: true,
        },
        {
          href: 'shared',
          caption: 'X figure 2 (would be Y shared).',
          key: 'PMC9400003.1/shared.jpg',
          md5: md5(victimShared),
          noFile: true,
        },
      ],
    },
    {
      // ... and Y, the victim: published with its own captions and its own images
      pmcid: 'PMC9400003',
      title: 'The victim article',
      license: 'CC BY',
      figures: [
        { href: 'fig1', caption: 'Y figure 1, its own.', body: victimFig1 },
        { href: 'shared', caption: 'Y figure 2, its own.', body: victimShared },
      ],
    },
    {
      // 3. a checksum that is not an md5 (the file itself is there)
      pmcid: 'PMC9400004',
      title: 'A media checksum that is not an md5',
      license: 'CC BY',
      figures: [{ href: 'fig1', caption: 'Figure with md5=zz.', md5: 'zz', body: await small('PMC9400004', 'fig1') }],
    },
    {
      // 4a. too many bytes for any shard: four incompressible figures
      pmcid: 'PMC9400005',
      title: 'An article too large for a shard',
      license: 'CC BY',
      figures: await Promise.all(
        [1, 2, 3, 4].map(async (i) => ({
          href: `big${i}`,
          caption: `Big figure ${i}.`,
          body: await noiseJpeg(`PMC9400005-${i}`, 800, 800),
        })),
      ),
    },
    {
      // 4b. more samples than a shard holds (the 10,001-figure article, at this release's limit of 12)
      pmcid: 'PMC9400006',
      title: 'An article with more figures than a shard holds',
      license: 'CC BY',
      figures: await Promise.all(
        Array.from({ length: HOSTILE_SHARD_LIMITS.maxSamples + 1 }, async (_, i) => ({
          href: `p${i + 1}`,
          caption: `Panel ${i + 1}.`,
          body: await small('PMC9400006', `p${i + 1}`),
        })),
      ),
    },
    {
      // 5. characters XML forbids (NUL, ESC, U+FFFF) in the title and a caption
      pmcid: 'PMC9400007',
      title: 'Title with a NUL\u0000 and an escape\u001b character',
      license: 'CC BY',
      figures: [
        {
          href: 'fig1',
          caption: 'Caption with NUL\u0000 and U+FFFF\uffff inside.',
          body: await small('PMC9400007', 'fig1'),
        },
        { href: 'fig2', caption: 'A clean caption.', body: await small('PMC9400007', 'fig2') },
      ],
    },
    {
      // 6. an SVG and an image too tall for a JPEG, under image names
      pmcid: 'PMC9400008',
      title: 'Images that are not what their names say',
      license: 'CC BY',
      figures: [
        {
          href: 'fig1.png',
          caption: 'An SVG named .png.',
          body: Buffer.from(
            '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100"><rect width="200" height="100" fill="red"/></svg>\n',
          ),
        },
        {
          href: 'fig2.png',
          caption: 'A 30 x 70,000 pixel strip.',
          body: await sharp({ create: { width: 30, height: 70_000, channels: 3, background: '#fff' } })
            .png()
            .toBuffer(),
        },
        { href: 'fig3', caption: 'A good figure beside them.', body: await small('PMC9400008', 'fig3') },
      ],
    },
    {
      // 7. excluded at plan: not open access, and an XML URL in another article's folder
      pmcid: 'PMC9400009',
      title: 'Not open access',
      license: 'CC BY',
      figures: [{ href: 'fig1', caption: 'Never planned.', body: await small('PMC9400009', 'fig1') }],
      meta: { is_pmc_openaccess: false },
    },
    {
      pmcid: 'PMC9400010',
      title: 'XML URL in another folder',
      license: 'CC BY',
      figures: [{ href: 'fig1', caption: 'Never planned.', body: await small('PMC9400010', 'fig1') }],
      meta: { xml_url: `${BUCKET}/PMC9400003.1/PMC9400003.1.xml` },
    },
    // 8. two good articles that together pass the byte limit (a unit of their own, noncommercial): two shard files
    ...SPLIT_ARTICLES.map((v, k) => ({
      pmcid: v.split('.')[0]!,
      title: `A good article with large figures (${k + 1})`,
      license: 'CC BY-NC',
      figures: [1, 2].map((i) => ({ href: `fig${i}`, caption: `Large figure ${i} of article ${k + 1}.` })),
    })),
  ];
}

/**
 * Builds the mirror at `outDir`: the good real articles through the sample builder, then every hostile article,
 * then one inventory (dated after the builder's) listing them all.
 */
export async function buildHostileMirror(
  outDir: string,
  scratch: string,
): Promise<{ outDir: string; inventoryManifestKey: string }> {
  const nxmlDir = path.join(scratch, 'nxml');
  await fs.mkdir(nxmlDir, { recursive: true });
  const real = await fs.readdir(fixturePaths.nxml());
  for (const pmcid of GOOD_REAL_ARTICLES) {
    const file = real.find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
    if (!file) throw new Error(`no fixture for ${pmcid} in ${fixturePaths.nxml()}`);
    await fs.symlink(path.join(fixturePaths.nxml(), file), path.join(nxmlDir, file)).catch(() => undefined);
  }
  await buildSampleMirror({ nxmlDir, imagesDir: fixturePaths.images(), outDir, snapshot: '2026-11-01' });

  const lastModified = '2026-11-02T00:00:00.000Z';
  for (const a of await hostileArticles()) {
    const prefix = `${a.pmcid}.1`;
    const dir = path.join(outDir, prefix);
    await fs.mkdir(dir, { recursive: true });
    const mediaUrls: string[] = [];
    for (const [i, f] of a.figures.entries()) {
      const name = /\.(png|jpe?g)$/.test(f.href) ? f.href : `${f.href}.jpg`;
      const body = f.noFile ? null : (f.body ?? (await noiseJpeg(`${a.pmcid}-${i}`, 800, 800)));
      if (body) await fs.writeFile(path.join(outDir, f.at ?? `${prefix}/${name}`), body);
      mediaUrls.push(`${BUCKET}/${f.key ?? `${prefix}/${name}`}?md5=${f.md5 ?? md5(body!)}`);
    }
    const xml = jats(a);
    await fs.writeFile(path.join(dir, `${prefix}.xml`), xml);
    const meta = {
      pmcid: a.pmcid,
      version: 1,
      pmid: null,
      doi: `10.0000/hostile.${a.pmcid.toLowerCase()}`,
      title: a.title,
      citation: `J Hostile Input. 2026 Jun 2;1:${a.pmcid.slice(3)}.`,
      is_pmc_openaccess: true,
      is_manuscript: false,
      is_historical_ocr: false,
      is_retracted: false,
      license_code: a.license,
      xml_url: `${BUCKET}/${prefix}/${prefix}.xml?md5=${md5(xml)}`,
      media_urls: mediaUrls,
      ...a.meta,
    };
    const json = JSON.stringify(meta, null, 2) + '\n';
    await fs.writeFile(path.join(dir, `${prefix}.json`), json);
    await fs.writeFile(path.join(outDir, 'metadata', `${prefix}.json`), json);
  }
  // One inventory of every metadata JSON in the mirror, dated after the builder's, so it is the one planned.
  const rows: string[] = [];
  for (const name of (await fs.readdir(path.join(outDir, 'metadata'))).sort()) {
    rows.push(inventoryRow(`metadata/${name}`, await fs.readFile(path.join(outDir, 'metadata', name)), lastModified));
  }
  const inventoryManifestKey = await writeInventory(outDir, rows, '2026-11-02');
  return { outDir, inventoryManifestKey };
}
