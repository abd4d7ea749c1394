/**
 * Hostile input, through a whole release on a real Temporal dev server: a mirror whose inventory holds, beside good
 * real articles, one article for each way input has hurt a release (test/support/hostile-mirror.ts). The release
 * completes without a single retried activity; each bad case has exactly one clear quarantine record; every good
 * article's figures are published with their own images (hash-checked against the mirror's files); the unit whose
 * samples pass the shard's byte limit writes two shard files; and nothing is written outside the data dir.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readJson, readNdjson, sha256Hex } from '../activities/common/files';
import type { QuarantineRecord } from '../activities/common/quarantine';
import { normalizeFigureImage } from '../activities/images/normalize';
import { readSamplesParquet } from '../activities/parquet/writer';
import type { ArticleWarning } from '../activities/parse/activity';
import { parseJats } from '../activities/parse/jats';
import { resolveMediaFile } from '../activities/parse/media';
import type { PlannedUnit } from '../activities/plan/plan';
import type { ShardIndexEntry } from '../activities/publish/finalize';
import { readTarEntries, splitMemberName } from '../activities/shard/tar-reader';
import { startRelease } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import { SUBSETS } from '../config/release';
import {
  buildHostileMirror,
  ESCAPE_NAME,
  GOOD_REAL_ARTICLES,
  HOSTILE_CASES,
  HOSTILE_SHARD_LIMITS,
  REPAIRED_ARTICLE,
  SPLIT_ARTICLES,
} from './support/hostile-mirror';
import { createReleaseTestEnv, type ReleaseTestEnv } from './support/release-env';

/** Every file under `dir` (relative), with its size: what a folder holds, to compare before and after. */
function listing(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => !d.isDirectory())
    .map((d) => {
      const file = path.join(d.parentPath, d.name);
      return `${path.relative(dir, file)} ${fs.lstatSync(file).size}`;
    })
    .sort();
}

interface Published {
  shard: string;
  jpg: Buffer;
  json: Record<string, unknown>;
  txt: string;
}

const XML_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

describe('hostile input: one article never stalls, fails or corrupts a release', function () {
  this.timeout(600_000);
  const releaseId = 'hostile';
  let t: ReleaseTestEnv;
  let tmpRoot: string;
  let dataDir: string;
  let mirrorDir: string;
  let root: string;
  let untouched: { mirror: string[]; scratch: string[] };
  let records: QuarantineRecord[];
  let published: Map<string, Published>;
  let index: ShardIndexEntry[];

  before(async () => {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-hostile-'));
    dataDir = path.join(tmpRoot, 'data');
    mirrorDir = path.join(tmpRoot, 'mirror');
    const scratch = path.join(tmpRoot, 'scratch');
    t = await createReleaseTestEnv({
      dataDir,
      mirror: async () => (await buildHostileMirror(mirrorDir, scratch)).outDir,
    });
    untouched = { mirror: listing(mirrorDir), scratch: listing(scratch) };
    await t.startWorkers();
    const input = { ...sampleReleaseInput(dataDir, t.mirror.baseUrl, releaseId), shard: HOSTILE_SHARD_LIMITS };
    const outcome = await startRelease(t.env.client, input);
    assert.equal(outcome.kind, 'started');
    await t.env.client.workflow.getHandle(outcome.workflowId).result();
    root = path.join(dataDir, 'releases', releaseId);
    records = await readNdjson<QuarantineRecord>(path.join(root, 'report', 'quarantine.ndjson'));
    published = new Map();
    index = [];
    for (const subset of SUBSETS) {
      const file = path.join(root, 'webdataset', subset, 'index.json');
      if (!fs.existsSync(file)) continue;
      index.push(...(await readJson<ShardIndexEntry[]>(file)));
    }
    for (const e of index) {
      const members = new Map<string, Partial<Record<string, Buffer>>>();
      for await (const entry of readTarEntries(path.join(root, 'webdataset', e.shard))) {
        const { key, ext } = splitMemberName(entry.name)!;
        const m = members.get(key) ?? {};
        m[ext] = await entry.read();
        members.set(key, m);
      }
      for (const [key, m] of members) {
        assert.ok(!published.has(key), `${key} published twice`);
        published.set(key, {
          shard: e.shard,
          jpg: m.jpg!,
          json: JSON.parse(m.json!.toString('utf8')),
          txt: m.txt!.toString('utf8'),
        });
      }
    }
  });
  after(async () => {
    await t?.teardown();
    if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
  });

  it('completes, and no activity of the release or of any unit was ever retried or failed', async () => {
    const units = fs.readdirSync(path.join(root, 'plan', 'units')).map((f) => f.replace(/\.json$/, ''));
    assert.ok(units.length >= 4, `${units.length} units`);
    for (const id of [`release-${releaseId}`, ...units.map((u) => `release-${releaseId}/${u}`)]) {
      const desc = await t.env.client.workflow.getHandle(id).describe();
      assert.equal(desc.status.name, 'COMPLETED', id);
      const history = await t.env.client.workflow.getHandle(id).fetchHistory();
      for (const ev of history.events ?? []) {
        assert.ok(
          !ev.activityTaskFailedEventAttributes && !ev.activityTaskTimedOutEventAttributes,
          `${id}: an activity failed or timed out`,
        );
        const attempt = ev.activityTaskStartedEventAttributes?.attempt ?? 1;
        assert.equal(attempt, 1, `${id}: an activity ran attempt ${attempt}`);
      }
    }
  });

  it('records each bad case exactly once, with a reason that says what happened, and nothing else of those articles', () => {
    for (const c of HOSTILE_CASES) {
      const found = records.filter(
        (r) => r.article === c.article && r.figure === c.figure && r.stage === c.stage && r.reason === c.reason,
      );
      assert.equal(found.length, 1, `${JSON.stringify(c)}: ${found.length} records`);
      assert.ok(found[0]!.detail.length > 15, found[0]!.detail);
    }
    const hostile = new Set(HOSTILE_CASES.map((c) => c.article));
    const others = records.filter(
      (r) =>
        r.article &&
        hostile.has(r.article) &&
        !HOSTILE_CASES.some(
          (c) => c.article === r.article && c.figure === r.figure && c.stage === r.stage && c.reason === r.reason,
        ),
    );
    assert.deepEqual(others, [], 'no second record for a bad case');
    for (const a of [REPAIRED_ARTICLE, ...SPLIT_ARTICLES, 'PMC9400003.1'])
      assert.deepEqual(
        records.filter((r) => r.article === a),
        [],
        `${a} is good`,
      );
    // The details say what happened, where a person can act on them.
    const detail = (article: string, reason: string) =>
      records.find((r) => r.article === article && r.reason === reason)!.detail;
    assert.match(detail('PMC9400001.1', 'unsafe-media-key'), /escaped-fig1\.jpg" has a "\." or "\.\." segment/);
    assert.match(detail('PMC9400002.1', 'foreign-media-key'), /in PMC9400003\.1's folder, not PMC9400002\.1's/);
    assert.match(detail('PMC9400004.1', 'bad-media-md5'), /md5 "zz" .* is not 32 hex digits/);
    assert.match(detail('PMC9400005.1', 'too-large'), /over the shard limit of 12 samples and 2000000 bytes/);
    assert.match(detail('PMC9400006.1', 'too-large'), /^13 samples/);
    assert.match(detail('PMC9400008.1', 'unsupported-format'), /SVG/);
    assert.match(detail('PMC9400008.1', 'too-large'), /30x70000: a side over 65500 px/);
    assert.match(detail('PMC9400010.1', 'bad-metadata'), /PMC9400003\.1's folder/);
  });

  it("publishes every good figure with its own image: hash-checked against the mirror, never another article's", async () => {
    const expected = new Map<string, { jpg: Buffer; caption: string }>();
    const goodHostile: Record<string, number[]> = {
      'PMC9400001.1': [1],
      'PMC9400003.1': [0, 1],
      [REPAIRED_ARTICLE]: [0, 1],
      'PMC9400008.1': [2],
      [SPLIT_ARTICLES[0]!]: [0, 1],
      [SPLIT_ARTICLES[1]!]: [0, 1],
    };
    const planned = fs
      .readdirSync(path.join(root, 'plan', 'units'))
      .flatMap(
        (f) => (JSON.parse(fs.readFileSync(path.join(root, 'plan', 'units', f), 'utf8')) as PlannedUnit).articles,
      );
    for (const a of planned) {
      const article = `${a.pmcid}.${a.version}`;
      const good = GOOD_REAL_ARTICLES.includes(a.pmcid) ? null : (goodHostile[article] ?? []);
      const folder = path.join(mirrorDir, article);
      const names = fs.readdirSync(folder).filter((n) => /\.(jpe?g|png|gif|tiff?)$/i.test(n));
      const record = parseJats(fs.readFileSync(path.join(folder, `${article}.xml`)), { pmcidHint: a.pmcid });
      for (const [i, f] of record.figures.entries()) {
        if (good !== null && !good.includes(i)) continue;
        if (!f.caption.trim()) continue;
        const name = resolveMediaFile(f.graphicHref, names);
        if (!name) continue;
        const img = await normalizeFigureImage(fs.readFileSync(path.join(folder, name)));
        if (!img.ok) continue;
        expected.set(`${a.pmcid}_${a.version}_${String(i).padStart(3, '0')}`, { jpg: img.jpeg, caption: f.caption });
      }
    }
    for (const pmcid of GOOD_REAL_ARTICLES)
      assert.ok(
        [...expected.keys()].some((k) => k.startsWith(`${pmcid}_`)),
        `${pmcid} has figures to publish`,
      );
    assert.deepEqual(
      [...published.keys()].sort(),
      [...expected.keys()].sort(),
      'exactly the good figures are published',
    );
    for (const [key, want] of expected) {
      const got = published.get(key)!;
      assert.equal(sha256Hex(got.jpg), sha256Hex(want.jpg), `${key}: its own image`);
      assert.equal(got.txt, want.caption, `${key}: its own caption`);
      assert.equal(got.json.article_accession_id, key.split('_')[0]);
    }
    // Y's images went out once, under Y's keys only.
    const victim = [...published.entries()]
      .filter(([k]) => k.startsWith('PMC9400003_'))
      .map(([, p]) => sha256Hex(p.jpg));
    assert.equal(victim.length, 2);
    for (const [key, p] of published)
      if (!key.startsWith('PMC9400003_'))
        assert.ok(!victim.includes(sha256Hex(p.jpg)), `${key} carries the victim's image`);
  });

  it('removes characters XML forbids from what it publishes, and says so once in report/warnings.ndjson', async () => {
    const warnings = await readNdjson<ArticleWarning>(path.join(root, 'report', 'warnings.ndjson'));
    const mine = warnings.filter((w) => w.article === REPAIRED_ARTICLE);
    assert.equal(mine.length, 1);
    assert.match(mine[0]!.detail, /^characters XML forbids: 4 characters .* removed from the text$/);
    const key = `${REPAIRED_ARTICLE.replace('.', '_')}_000`;
    assert.equal(published.get(key)!.txt, 'Caption with NUL and U+FFFF inside.');
    assert.equal(published.get(key)!.json.article_title, 'Title with a NUL and an escape character');
    for (const [k, p] of published) {
      assert.ok(!XML_FORBIDDEN.test(p.txt), `${k}.txt`);
      assert.ok(!XML_FORBIDDEN.test(JSON.stringify(p.json)), `${k}.json`);
    }
    for (const e of index) {
      for (const row of await readSamplesParquet(path.join(root, 'parquet', e.parquet)))
        assert.ok(!XML_FORBIDDEN.test(JSON.stringify(row)), `${e.parquet}: ${row.key}`);
    }
    const summary = await readJson<{ warnings: number }>(path.join(root, 'report', 'summary.json'));
    assert.equal(summary.warnings, warnings.length);
  });

  it('splits a unit over two shard files rather than fail it; every file within the limits, parquet beside each', async () => {
    const unitOf = (article: string) =>
      index.find((e) =>
        [...published.keys()].some(
          (k) => k.startsWith(article.replace('.', '_')) && published.get(k)!.shard === e.shard,
        ),
      )!.unit;
    const unit = unitOf(SPLIT_ARTICLES[0]!);
    assert.equal(unitOf(SPLIT_ARTICLES[1]!), unit);
    const parts = index.filter((e) => e.unit === unit);
    assert.ok(parts.length >= 2, `${unit}: ${parts.length} shard files`);
    assert.deepEqual(
      parts.slice(1).map((p) => path.posix.basename(p.shard)),
      parts
        .slice(1)
        .map((_, k) => `${path.posix.basename(parts[0]!.shard, '.tar')}_${String(k + 1).padStart(3, '0')}.tar`),
    );
    for (const e of index) {
      const bytes = fs.statSync(path.join(root, 'webdataset', e.shard)).size;
      assert.ok(
        bytes <= HOSTILE_SHARD_LIMITS.maxBytes && e.samples <= HOSTILE_SHARD_LIMITS.maxSamples,
        `${e.shard}: ${bytes} bytes, ${e.samples} samples`,
      );
      const keys = [...published.entries()].filter(([, p]) => p.shard === e.shard).map(([k]) => k);
      assert.deepEqual(
        (await readSamplesParquet(path.join(root, 'parquet', e.parquet))).map((r) => r.key),
        keys,
        `${e.parquet} has ${e.shard}'s rows`,
      );
      assert.equal(e.parquet, e.shard.replace(/\.tar$/, '.parquet'));
    }
    const sizes = JSON.parse(
      fs.readFileSync(path.join(root, 'webdataset', parts[0]!.shard.split('/')[0]!, 'sizes.json'), 'utf8'),
    ) as Record<string, number>;
    for (const p of parts) assert.equal(sizes[path.posix.basename(p.shard)], p.samples);
  });

  it("puts the plan's exclusions in the rejection report too", () => {
    const plan = records.filter((r) => r.stage === 'plan' && r.figure === null);
    assert.deepEqual(
      plan.map((r) => [r.article, r.reason]),
      [
        ['PMC9400009.1', 'not-open-access'],
        ['PMC9400010.1', 'bad-metadata'],
      ],
    );
  });

  it('writes nothing outside the data dir: the mirror and the scratch folder are untouched, no escaped file anywhere', () => {
    assert.deepEqual(fs.readdirSync(tmpRoot).sort(), ['data', 'mirror', 'scratch']);
    assert.deepEqual(listing(mirrorDir), untouched.mirror);
    assert.deepEqual(listing(path.join(tmpRoot, 'scratch')), untouched.scratch);
    const everything = listing(tmpRoot);
    assert.deepEqual(
      everything.filter((f) => f.includes(ESCAPE_NAME)),
      [],
    );
    // The escaping and the foreign keys staged nothing: no unit holds a file of PMC9400003 but PMC9400003's own.
    for (const f of everything.filter((x) => x.startsWith('data/releases/') && x.includes('/media/'))) {
      assert.match(f, /\/media\/(PMC\d+\.\d+)\/[^/]+ \d+$/, f);
    }
    assert.deepEqual(
      everything.filter((f) => /\/media\/PMC9400002\.1\//.test(f)),
      [],
    );
    assert.deepEqual(
      fs.readdirSync(dataDir).filter((d) => !['releases', 'cache', 'models'].includes(d)),
      [],
    );
  });
});
