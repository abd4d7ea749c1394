import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { annotateUnit, ensureAnnotationModels, releaseEmbedders } from '../activities/annotate/activity';
import {
  buildTaxonomyReviewPack,
  fitTaxonomyModel,
  sampleTaxonomyEmbeddings,
  type ReviewPackResult,
} from '../activities/annotate/taxonomy-activity';
import { buildSyntheticRelease, type SyntheticRelease } from './taxonomy-fixture';

/** Debian's chromium (scripts/setup.sh installs it: apt-get install -y chromium); CHROMIUM overrides. */
function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome'].filter(
    (c): c is string => !!c,
  );
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  throw new Error(
    `headless Chromium is needed to check the review pack renders, and none of ${candidates.join(', ')} runs here. ` +
      'Install it (Debian: apt-get install -y chromium; scripts/setup.sh does) or point CHROMIUM at a Chrome/Chromium binary.',
  );
}

/** The page's DOM after load (and after its inline scripts ran), from headless Chromium. */
function dumpDom(chromium: string, file: string, profile: string): string {
  return execFileSync(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--allow-file-access-from-files',
      `--user-data-dir=${profile}`,
      '--virtual-time-budget=5000',
      '--dump-dom',
      pathToFileURL(file).href,
    ],
    { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] },
  );
}

function imageCheck(dom: string): { loaded: number; total: number } {
  const m = /<p id="image-check" data-loaded="(\d+)" data-total="(\d+)">/.exec(dom);
  assert.ok(m, `the page's image check did not run; DOM starts: ${dom.slice(0, 300)}`);
  return { loaded: Number(m[1]), total: Number(m[2]) };
}

describe('taxonomy review pack renders in headless Chromium', function () {
  this.timeout(120_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gallery-'));
  let chromium: string;
  let rel: SyntheticRelease;
  let pack: ReviewPackResult;

  before(async () => {
    chromium = chromiumPath(); // fails the suite with the message above when missing: never skipped
    rel = await buildSyntheticRelease({ dataDir: path.join(tmp, 'data'), units: 2, figuresPerUnit: 12 });
    await ensureAnnotationModels(rel.release);
    for (const unitId of rel.units) await annotateUnit({ release: rel.release, unitId });
    const input = {
      release: rel.release,
      version: 'gallery-k3',
      clusters: 3,
      pcaComponents: 6,
      maxSamples: 24,
      seed: 1,
      kmeansBatchSize: 8,
      perCluster: 5,
      thumbSize: 96,
    };
    await sampleTaxonomyEmbeddings(input);
    const fit = await fitTaxonomyModel(input);
    pack = await buildTaxonomyReviewPack({
      dataDir: rel.release.dataDir,
      taxonomyPath: fit.taxonomyPath,
      perCluster: 5,
      thumbSize: 96,
    });
  });
  after(async () => {
    await releaseEmbedders();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writes an index, one page per cluster, JPEG thumbnails beside them and the labels file to fill', () => {
    assert.equal(pack.clusters, 3);
    assert.ok(fs.existsSync(pack.index));
    for (const id of [0, 1, 2]) assert.ok(fs.existsSync(path.join(pack.dir, 'clusters', `${id}.html`)));
    const thumbs = fs.readdirSync(path.join(pack.dir, 'thumbs'));
    assert.equal(thumbs.length, pack.thumbnails);
    assert.ok(pack.thumbnails >= 3 && pack.thumbnails <= 15);
    const first = fs.readFileSync(path.join(pack.dir, 'thumbs', thumbs[0]!));
    assert.deepEqual([...first.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG');
    const labels = JSON.parse(fs.readFileSync(pack.labelsFile, 'utf8'));
    assert.deepEqual(labels, {
      '0': { panel_type: '', panel_subtype: '', global_class: [], local_class: [] },
      '1': { panel_type: '', panel_subtype: '', global_class: [], local_class: [] },
      '2': { panel_type: '', panel_subtype: '', global_class: [], local_class: [] },
    });
  });

  it('every cluster page shows all its thumbnails (naturalWidth > 0) with escaped captions', () => {
    let shown = 0;
    for (const id of [0, 1, 2]) {
      const page = path.join(pack.dir, 'clusters', `${id}.html`);
      const dom = dumpDom(chromium, page, path.join(tmp, `profile-${id}`));
      const { loaded, total } = imageCheck(dom);
      const html = fs.readFileSync(page, 'utf8');
      const expected = (html.match(/<img /g) ?? []).length;
      assert.equal(total, expected, `cluster ${id}: Chromium saw every <img>`);
      assert.equal(loaded, total, `cluster ${id}: ${loaded} of ${total} images decoded`);
      shown += loaded;
      // Captions are text, not markup: "<synthetic> & seeded" survives as entities.
      if (total > 0) assert.match(dom, /A (bar chart|micrograph|table|discs) &lt;synthetic&gt; &amp; seeded/);
    }
    assert.equal(shown, pack.thumbnails);
  });

  it('the index shows a strip of thumbnails per cluster and links every cluster page', () => {
    const dom = dumpDom(chromium, pack.index, path.join(tmp, 'profile-index'));
    const { loaded, total } = imageCheck(dom);
    assert.ok(total > 0 && loaded === total, `${loaded} of ${total} images loaded`);
    for (const id of [0, 1, 2]) assert.match(dom, new RegExp(`href="clusters/${id}\\.html"`));
    assert.match(dom, /labels-to-fill\.json/);
  });

  it('a missing staged image is reported on the page, not as a broken image', async () => {
    const first = fs.readdirSync(path.join(pack.dir, 'thumbs'))[0]!.replace(/\.jpg$/, '');
    const unit = rel.figures.get(first)!.unit;
    fs.rmSync(path.join(rel.layout.unitDir(unit), 'images', `${first}.jpg`));
    fs.rmSync(path.join(pack.dir, 'thumbs', `${first}.jpg`));
    const again = await buildTaxonomyReviewPack({
      dataDir: rel.release.dataDir,
      taxonomyPath: path.join(rel.release.dataDir, 'models', 'taxonomy-gallery-k3.json'),
      perCluster: 5,
      thumbSize: 96,
    });
    assert.equal(again.thumbnails, pack.thumbnails - 1);
    const page = fs
      .readdirSync(path.join(pack.dir, 'clusters'))
      .map((f) => path.join(pack.dir, 'clusters', f))
      .find((f) => fs.readFileSync(f, 'utf8').includes(first))!;
    const { loaded, total } = imageCheck(dumpDom(chromium, page, path.join(tmp, 'profile-missing')));
    assert.equal(loaded, total);
    assert.match(fs.readFileSync(page, 'utf8'), /\(image missing\)/);
  });
});
