import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { readNdjson } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import { setFetchTuning, type FetchTuning } from '../activities/fetch/retry';
import { SourceError } from '../activities/fetch/source';
import { planRelease } from '../activities/plan/activity';
import {
  ArticleMetadataSchema,
  cutUnits,
  selectArticles,
  type ArticleMetadata,
  type Exclusion,
  type PlannedUnit,
  type VersionFacts,
} from '../activities/plan/plan';
import { BUCKET_SPAN, decodeFacts, encodeFacts } from '../activities/plan/planner';
import {
  startMirrorServer,
  writeSyntheticArticle,
  writeSyntheticInventory,
  type MirrorServer,
  type SyntheticArticle,
} from '../sample/mirror-server';

const LIMITS = { maxArticles: 4, maxImages: 6 };

const ARTICLES: SyntheticArticle[] = [
  { pmcid: 1, license: 'CC BY', figures: 2 },
  { pmcid: 2, version: 1, license: 'CC BY-NC' },
  { pmcid: 2, version: 2, license: 'CC BY-NC', figures: 3 },
  { pmcid: 3, oa: false },
  { pmcid: 4, version: 1 },
  { pmcid: 4, version: 2, retracted: true },
  { pmcid: 5, license: 'CC BY 4.0' },
  { pmcid: 6, license: null },
  { pmcid: 7, license: 'TDM' },
  { pmcid: 8, version: 3, license: 'CC BY-SA', figures: 0 },
  ...Array.from({ length: 14 }, (_, i): SyntheticArticle => ({
    pmcid: 13 + i,
    license: i % 3 === 0 ? 'CC0' : 'CC BY',
    figures: (i * 5) % 7,
  })),
  { pmcid: BUCKET_SPAN + 100, license: 'CC0', figures: 1 },
  { pmcid: 2 * BUCKET_SPAN + 7, license: 'CC BY-ND', figures: 9 },
  { pmcid: 2 * BUCKET_SPAN + 8, license: 'CC BY-NC-SA' },
];

describe('the streaming planner against the loopback bucket', function () {
  this.timeout(60_000);
  let bucket: string;
  let dataDir: string;
  let mirror: MirrorServer;
  let tuning: FetchTuning;
  let n = 0;
  const release = (over: Partial<ReleaseInput> = {}): ReleaseInput =>
    ReleaseInputSchema.parse({
      releaseId: `plan-${++n}`,
      dataDir,
      source: { kind: 'pmc-cloud-http', baseUrl: mirror.baseUrl },
      units: LIMITS,
      ...over,
    });
  const unitsOf = (rel: ReleaseInput, counts: Record<string, { units: number }>): PlannedUnit[] => {
    const layout = new ReleaseLayout(dataDir, rel.releaseId);
    const out: PlannedUnit[] = [];
    for (const subset of ['commercial', 'noncommercial', 'other']) {
      for (let i = 0; i < counts[subset]!.units; i++)
        out.push(
          JSON.parse(
            fs.readFileSync(layout.unitFile(`${subset}-${String(i).padStart(6, '0')}`), 'utf8'),
          ) as PlannedUnit,
        );
    }
    return out;
  };
  const metadataGets = () => mirror.requests.filter((r) => r.key.startsWith('metadata/'));

  before(async () => {
    bucket = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-bucket-'));
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-data-'));
    for (const a of ARTICLES) await writeSyntheticArticle(bucket, a);
    // Unreadable JSON, metadata that describes another article, and a key the inventory lists but the bucket lost.
    fs.writeFileSync(path.join(bucket, 'metadata', 'PMC9.1.json'), '{"pmcid": "PMC9", "version": 1, ');
    const other = await writeSyntheticArticle(bucket, { pmcid: 11 });
    fs.writeFileSync(path.join(bucket, 'metadata', 'PMC10.1.json'), JSON.stringify(other));
    fs.rmSync(path.join(bucket, 'metadata', 'PMC11.1.json'));
    await writeSyntheticArticle(bucket, { pmcid: 12 });
    await writeSyntheticInventory(bucket, '2026-11-01', { rowsPerFile: 7 });
    fs.rmSync(path.join(bucket, 'metadata', 'PMC12.1.json'));
    mirror = await startMirrorServer(bucket);
    tuning = setFetchTuning({ attempts: 3, backoffMs: 5, backoffMaxMs: 20 });
  });
  after(async () => {
    setFetchTuning(tuning);
    await mirror?.close();
    fs.rmSync(bucket, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    mirror.faults.length = 0;
    mirror.requests.length = 0;
  });

  it('keeps OA, newest, non-retracted versions, groups licenses exactly and records every exclusion', async () => {
    const rel = release();
    const s = await planRelease(rel);
    assert.equal(s.inventoryRows, ARTICLES.length + 3);
    assert.equal(s.metadataFetched, ARTICLES.length + 3);
    assert.equal(s.inventoryManifest, 'inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json');
    assert.deepEqual(s.excluded, {
      'superseded-version': 2,
      'not-open-access': 1,
      retracted: 1,
      'unreadable-metadata': 2,
      'bad-metadata': 1,
    });
    assert.equal(s.selectedArticles, ARTICLES.length - 4); // PMC2.1, PMC3, PMC4.1, PMC4.2
    assert.deepEqual(s.otherLicenses, { 'CC BY 4.0': 1, '(none)': 1, TDM: 1 });
    assert.deepEqual(s.changes, {
      previousRelease: null,
      new: ARTICLES.length + 3,
      changed: 0,
      unchanged: 0,
      removed: 0,
      newlyRetracted: 0,
    });
    const layout = new ReleaseLayout(dataDir, rel.releaseId);
    const excluded = await readNdjson<Exclusion>(path.join(layout.planDir, 'excluded.ndjson'));
    // In PMCID order (the plan's bucket order), so the file is the same on every run.
    assert.deepEqual(
      excluded.map((e) => [e.key, e.reason]),
      [
        ['metadata/PMC2.1.json', 'superseded-version'],
        ['metadata/PMC3.1.json', 'not-open-access'],
        ['metadata/PMC4.1.json', 'superseded-version'],
        ['metadata/PMC4.2.json', 'retracted'],
        ['metadata/PMC9.1.json', 'unreadable-metadata'],
        ['metadata/PMC10.1.json', 'bad-metadata'],
        ['metadata/PMC12.1.json', 'unreadable-metadata'],
      ],
    );
    assert.match(excluded.find((e) => e.key.includes('PMC12'))!.detail, /404/);
    assert.match(excluded.find((e) => e.key.includes('PMC10'))!.detail, /describes PMC11\.1/);
    const units = unitsOf(rel, s.subsets);
    const other = units
      .filter((u) => u.subset === 'other')
      .flatMap((u) => u.articles.map((a) => [a.pmcid, a.licenseCode]));
    assert.deepEqual(other, [
      ['PMC5', 'CC BY 4.0'],
      ['PMC6', null],
      ['PMC7', 'TDM'],
    ]);
    assert.ok(!fs.existsSync(path.join(layout.planDir, 'work')), 'the spill is removed');
    assert.deepEqual(fs.readdirSync(path.join(layout.planDir, 'facts')).sort(), [
      '000000.tsv',
      '000001.tsv',
      '000002.tsv',
    ]);
  });

  it('cuts exactly the units the in-memory selectArticles + cutUnits would', async () => {
    const rel = release();
    const s = await planRelease(rel);
    const entries = ARTICLES.map((a) => {
      const key = `metadata/PMC${a.pmcid}.${a.version ?? 1}.json`;
      const body = fs.readFileSync(path.join(bucket, key));
      const meta: ArticleMetadata = ArticleMetadataSchema.parse(JSON.parse(body.toString('utf8')));
      return { row: { key, etag: createHash('md5').update(body).digest('hex'), lastModified: '' }, meta };
    });
    const expected = cutUnits(selectArticles(entries).selected, LIMITS);
    assert.deepEqual(unitsOf(rel, s.subsets), expected);
    assert.deepEqual(Object.fromEntries(Object.entries(s.subsets).map(([k, v]) => [k, v.units])), {
      commercial: expected.filter((u) => u.subset === 'commercial').length,
      noncommercial: expected.filter((u) => u.subset === 'noncommercial').length,
      other: 1,
    });
    for (const u of expected) {
      assert.ok(u.articles.length <= LIMITS.maxArticles);
      assert.ok(
        u.articles.length === 1 || u.articles.reduce((k, a) => k + a.media.length, 0) <= LIMITS.maxImages,
        u.unitId,
      );
    }
  });

  it('is deterministic (same planHash and unit bytes) and reuses a finished plan without a request', async () => {
    const a = release();
    const b = release();
    const sa = await planRelease(a);
    const sb = await planRelease(b);
    assert.equal(sa.planHash, sb.planHash);
    const la = new ReleaseLayout(dataDir, a.releaseId);
    const lb = new ReleaseLayout(dataDir, b.releaseId);
    for (const f of fs.readdirSync(path.dirname(la.unitFile('x'))))
      assert.deepEqual(
        fs.readFileSync(path.join(path.dirname(lb.unitFile('x')), f)),
        fs.readFileSync(path.join(path.dirname(la.unitFile('x')), f)),
        f,
      );
    assert.deepEqual(
      fs.readFileSync(path.join(la.planDir, 'excluded.ndjson')),
      fs.readFileSync(path.join(lb.planDir, 'excluded.ndjson')),
    );
    mirror.requests.length = 0;
    assert.deepEqual(await planRelease(a), sa);
    assert.equal(mirror.requests.length, 0);
  });

  it('retries metadata GETs that hit 500s or dropped connections', async () => {
    mirror.faults.push(
      { match: 'metadata/PMC13.1.json', fault: { kind: 'status', status: 500 }, times: 2 },
      { match: 'metadata/PMC14.1.json', fault: { kind: 'drop', afterBytes: 10 }, times: 1 },
    );
    const s = await planRelease(release());
    assert.equal(s.excluded['unreadable-metadata'], 2, 'only the two really unreadable ones');
    assert.deepEqual(
      metadataGets()
        .filter((r) => r.key === 'metadata/PMC13.1.json')
        .map((r) => r.status),
      [500, 500, 200],
    );
  });

  it('fails on a persistent metadata 5xx, then resumes from the facts of the buckets already done', async () => {
    const rel = release();
    const lastBucketKey = `metadata/PMC${2 * BUCKET_SPAN + 8}.1.json`;
    mirror.faults.push({ match: lastBucketKey, fault: { kind: 'status', status: 503 } });
    await assert.rejects(
      planRelease(rel),
      (err: unknown) => err instanceof SourceError && err.kind === 'server' && err.retryable,
    );
    const layout = new ReleaseLayout(dataDir, rel.releaseId);
    assert.ok(!fs.existsSync(layout.planFile), 'no plan.json after a failed plan');
    assert.deepEqual(
      fs.readdirSync(path.join(layout.planDir, 'facts')).sort(),
      ['000000.tsv', '000001.tsv'],
      'the checkpoint of the first two buckets',
    );
    assert.ok(
      fs.existsSync(path.join(layout.planDir, 'units', 'commercial-000000.json')),
      'units closed before the failure are written',
    );
    mirror.faults.length = 0;
    mirror.requests.length = 0;
    const s = await planRelease(rel);
    // Facts of buckets 0 and 1 are reused, with the articles of every unit written before the failure; read again:
    // bucket 2, the 3 unreadable keys (never kept), and the articles of the units still open at the failure.
    const gets = metadataGets().map((r) => r.key);
    for (const k of [
      'metadata/PMC9.1.json',
      'metadata/PMC10.1.json',
      'metadata/PMC12.1.json',
      lastBucketKey,
      `metadata/PMC${2 * BUCKET_SPAN + 7}.1.json`,
    ])
      assert.ok(gets.includes(k), k);
    assert.ok(gets.length < 15, `${gets.length} GETs on resume, of ${ARTICLES.length + 3} rows`);
    assert.equal(s.metadataFetched, gets.length);
    assert.ok(!gets.includes('metadata/PMC1.1.json'), 'PMC1 was in commercial-000000, written before the failure');
    const full = await planRelease(release());
    assert.equal(s.planHash, full.planHash, 'the resumed plan is the plan');
    assert.ok(!fs.existsSync(path.join(layout.planDir, 'units.resume')));
  });

  describe('inventory faults', () => {
    const DATA = /^inventory-reports\/.*\/data\/.*\.csv\.gz$/;
    it('fails clearly on a truncated inventory csv.gz (manifest MD5checksum present) and writes no plan', async () => {
      mirror.faults.push({ match: DATA, fault: { kind: 'truncate' }, times: 1 });
      const rel = release();
      await assert.rejects(
        planRelease(rel),
        (err: unknown) => err instanceof SourceError && err.kind === 'checksum' && /md5 mismatch/.test(err.message),
      );
      const layout = new ReleaseLayout(dataDir, rel.releaseId);
      assert.ok(!fs.existsSync(layout.planFile));
      assert.ok(!fs.existsSync(path.dirname(layout.unitFile('x'))), 'no unit written');
      assert.equal(metadataGets().length, 0, 'nothing planned from a partial inventory');
    });

    it('fails clearly on a truncated gzip even without MD5checksum, and on a corrupted one', async () => {
      const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-bare-'));
      try {
        for (const a of ARTICLES.slice(0, 10)) await writeSyntheticArticle(bare, a);
        await writeSyntheticInventory(bare, '2026-11-02', { withMd5: false, rowsPerFile: 1000 });
        const m = await startMirrorServer(bare);
        try {
          const rel = ReleaseInputSchema.parse({
            releaseId: `plan-bare-${++n}`,
            dataDir,
            source: { kind: 'pmc-cloud-http', baseUrl: m.baseUrl },
          });
          m.faults.push({ match: DATA, fault: { kind: 'truncate' }, times: 1 });
          await assert.rejects(
            planRelease(rel),
            (err: unknown) =>
              err instanceof SourceError &&
              err.kind === 'checksum' &&
              /not a whole gzip: unexpected end of file/.test(err.message),
          );
          m.faults.push({ match: DATA, fault: { kind: 'corrupt' }, times: 1 });
          await assert.rejects(
            planRelease(rel),
            (err: unknown) => err instanceof SourceError && /not a whole gzip/.test(err.message),
          );
          m.faults.push({ match: DATA, fault: { kind: 'drop', afterBytes: 40 }, times: 1 });
          await assert.rejects(planRelease(rel), (err: unknown) => err instanceof SourceError && err.retryable);
          assert.ok(!fs.existsSync(new ReleaseLayout(dataDir, rel.releaseId).planFile));
          const s = await planRelease(rel); // faults spent: the same release now plans
          assert.equal(s.inventoryRows, 10);
        } finally {
          await m.close();
        }
      } finally {
        fs.rmSync(bare, { recursive: true, force: true });
      }
    });

    it('fails without retries when the inventory cannot exist (403 on the listing data file)', async () => {
      mirror.faults.push({ match: DATA, fault: { kind: 'status', status: 403 } });
      await assert.rejects(
        planRelease(release()),
        (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && /403/.test(err.message),
      );
    });
  });
});

describe('plan facts encoding', () => {
  it('keeps identity, flags and ETag of a version in one tab-separated line, and round-trips them', () => {
    const cases: VersionFacts[] = [
      {
        key: 'metadata/PMC7.2.json',
        pmcid: 7,
        version: 2,
        etag: '0123456789abcdef0123456789abcdef',
        oa: true,
        retracted: false,
        article: null,
      },
      { key: 'metadata/PMC9.1.json', pmcid: 9, version: 1, etag: 'e9-3', oa: false, retracted: true, article: null },
      {
        key: 'oa_package/ac/6a/PMC7112410.tar.gz',
        pmcid: 7112410,
        version: 1,
        etag: '2020-04-06 14:56:00',
        oa: true,
        retracted: true,
        article: null,
      },
    ];
    for (const f of cases) assert.deepEqual(decodeFacts(encodeFacts(f)), f);
    assert.equal(
      encodeFacts(cases[0]!),
      '7\t2\t1\t0123456789abcdef0123456789abcdef\t',
      'the canonical cloud key is implied',
    );
    assert.equal(
      encodeFacts({ ...cases[0]!, key: 'metadata/PMC7.2.json.bak' }),
      '7\t2\t1\t0123456789abcdef0123456789abcdef\tmetadata/PMC7.2.json.bak',
    );
    // Keys that only look canonical are kept whole (the check compares digits in place, without building the key).
    const near = [
      'metadata/PMC07.2.json',
      'metadata/PMC7.02.json',
      'metadata/PMC70.2.json',
      'metadata/PMC7.2',
      'metadata/PMC7.2.jsonx',
      'metadata/PMC7..json',
      'metadata/PMC.2.json',
      'metadata/PMC7.23.json',
      'xmetadata/PMC7.2.json',
    ];
    for (const key of near) {
      assert.equal(encodeFacts({ ...cases[0]!, key }), `7\t2\t1\t0123456789abcdef0123456789abcdef\t${key}`, key);
      assert.deepEqual(decodeFacts(encodeFacts({ ...cases[0]!, key })), { ...cases[0]!, key });
    }
    const big = {
      ...cases[0]!,
      pmcid: 9_007_199_254_740_991,
      version: 1000,
      key: 'metadata/PMC9007199254740991.1000.json',
    };
    assert.equal(encodeFacts(big), '9007199254740991\t1000\t1\t0123456789abcdef0123456789abcdef\t');
    assert.equal(encodeFacts({ ...big, key: 'metadata/PMC9007199254740992.1000.json' }).endsWith('.json'), true);
  });
});
