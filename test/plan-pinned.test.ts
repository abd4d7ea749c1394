import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { ReleaseInputSchema } from '../config/release';
import { ReleaseLayout } from '../activities/common/layout';
import { DirPmcSource } from '../activities/fetch/source';
import { runPlan } from '../activities/plan/activity';
import { generateInventory, planDigest, syntheticFacts } from '../bench/plan';

/**
 * The plan's bytes, pinned: the planner is tuned for speed (bench:plan), and every plan file (units, facts,
 * excluded.ndjson) must stay byte for byte what it was. The digests below were computed with the planner as it
 * was before that tuning (commit a2ada41), over the benchmark's own inventory generator at a small size: dense
 * buckets (about 12,000 rows each), PMCIDs with two versions, articles not open access and retracted.
 */
const PLAN_HASH = '85e1f59a864ee963c7a823617b34a993dd08ad79a332c379d666da9be395fe75';
/** sha256 over every plan file (bench/plan.ts planDigest); an incremental plan of an unchanged inventory writes the same. */
const PLAN_FILES = '8e4dc384f3a9d3d4ce6304355909f9210f5b0d5bd5b7523f09617a0a63778442';

describe('plan outputs pinned by digest', function () {
  this.timeout(120_000);
  let tmp: string;
  let root: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-pinned-'));
    root = path.join(tmp, 'bucket');
    const gen = await generateInventory(root, 60_000, 150_000);
    assert.ok(gen.rows > 55_000 && gen.rows < 65_000, `${gen.rows} rows`);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function plan(releaseId: string, previousRelease: string | null) {
    const dataDir = path.join(tmp, 'data');
    const release = ReleaseInputSchema.parse({
      releaseId,
      dataDir,
      source: { kind: 'pmc-cloud-dir', root },
      units: { maxArticles: 700, maxImages: 2000 },
      ...(previousRelease ? { previousRelease } : {}),
    });
    const layout = new ReleaseLayout(dataDir, releaseId);
    const previous = previousRelease
      ? {
          releaseId: previousRelease,
          factsDir: path.join(new ReleaseLayout(dataDir, previousRelease).planDir, 'facts'),
        }
      : null;
    const { result } = await runPlan(release, layout, previous, undefined, {
      source: new DirPmcSource(root),
      resolveSync: syntheticFacts,
      heartbeat: () => undefined,
    });
    return { result, digest: planDigest(layout.planDir) };
  }

  it('a full plan writes the same bytes as before', async () => {
    const { result, digest } = await plan('pinned-a', null);
    assert.equal(result.rows, 60_343);
    assert.deepEqual(result.excluded, { 'not-open-access': 4524, 'superseded-version': 2617, retracted: 48 });
    assert.equal(result.planHash, PLAN_HASH);
    assert.equal(digest, PLAN_FILES);
  });

  it('an incremental plan of the same inventory (every fact reused, articles read back) writes the same bytes', async () => {
    const { result, digest } = await plan('pinned-b', 'pinned-a');
    assert.equal(result.resolved, 0);
    assert.equal(result.changes.unchanged, result.rows);
    assert.equal(result.planHash, PLAN_HASH);
    assert.equal(digest, PLAN_FILES);
  });

  it('of a key listed twice the later row wins, and two keys of one version are both kept, in order', async () => {
    // The inventory repeats a key (a second ETag later), and names PMC7.1 by two keys ("PMC007" and "PMC7").
    const inv = 'inventory-reports/pmc-oa-opendata/metadata';
    const rows = [
      ['metadata/PMC5.1.json', 'e5-old'],
      ['metadata/PMC7.1.json', 'e7-a'],
      ['metadata/PMC6.1.json', 'e6'],
      ['metadata/PMC007.1.json', 'e7-b'],
      ['metadata/PMC5.1.json', 'e5-new'],
    ];
    const gz = gzipSync(rows.map(([k, e]) => `"pmc-oa-opendata","${k}","2026-11-01T00:00:00.000Z","${e}"\n`).join(''));
    root = path.join(tmp, 'dup-bucket');
    fs.mkdirSync(path.join(root, inv, 'data'), { recursive: true });
    fs.mkdirSync(path.join(root, inv, '2026-11-01T01-00Z'), { recursive: true });
    fs.writeFileSync(path.join(root, inv, 'data/d.csv.gz'), gz);
    const md5 = createHash('md5').update(gz).digest('hex');
    fs.writeFileSync(
      path.join(root, inv, '2026-11-01T01-00Z/manifest.json'),
      JSON.stringify({
        fileSchema: 'Bucket, Key, LastModifiedDate, ETag',
        files: [{ key: `${inv}/data/d.csv.gz`, MD5checksum: md5 }],
      }),
    );
    const { result } = await plan('dup', null);
    assert.equal(result.rows, 5);
    const facts = fs
      .readFileSync(path.join(new ReleaseLayout(path.join(tmp, 'data'), 'dup').planDir, 'facts', '000000.tsv'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.deepEqual(
      facts.map((f) => [f[0], f[3], f[4]]),
      [
        ['5', 'e5-new', ''],
        ['6', 'e6', ''],
        ['7', 'e7-a', ''],
        ['7', 'e7-b', 'metadata/PMC007.1.json'],
      ],
    );
    assert.equal(result.excluded['superseded-version'], 1);
  });
});
