import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { readNdjson } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import type { QuarantineRecord } from '../activities/common/quarantine';
import { articleXmlPath, fetchArticles, placeObject, TransientFetchError } from '../activities/fetch/activity';
import { ObjectCache } from '../activities/fetch/cache';
import { downloadLimiter, Limiter, setFetchTuning, withRetries, type FetchTuning } from '../activities/fetch/retry';
import { HttpPmcSource, SourceError } from '../activities/fetch/source';
import { planRelease } from '../activities/plan/activity';
import type { PlannedUnit } from '../activities/plan/plan';
import {
  startMirrorServer,
  writeSyntheticArticle,
  writeSyntheticInventory,
  type MirrorServer,
} from '../sample/mirror-server';

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

/** Every file under `dir`, relative. */
function files(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
}

describe('cloud source faults against the loopback bucket', function () {
  this.timeout(60_000);
  let bucket: string;
  let dataDir: string;
  let mirror: MirrorServer;
  let tuning: FetchTuning;
  let n = 0;

  const release = (over: Partial<ReleaseInput> = {}): ReleaseInput =>
    ReleaseInputSchema.parse({
      releaseId: `faults-${++n}`,
      dataDir,
      source: { kind: 'pmc-cloud-http', baseUrl: mirror.baseUrl },
      units: { maxArticles: 100 },
      entrez: { enabled: false },
      ...over,
    });

  /** Plans a fresh release and returns it with its single unit. */
  async function planned(): Promise<{ rel: ReleaseInput; unit: PlannedUnit; layout: ReleaseLayout }> {
    const rel = release();
    const summary = await planRelease(rel);
    assert.equal(summary.subsets.commercial.units, 1);
    const layout = new ReleaseLayout(dataDir, rel.releaseId);
    const unit = JSON.parse(fs.readFileSync(layout.unitFile('commercial-000000'), 'utf8')) as PlannedUnit;
    return { rel, unit, layout };
  }

  const quarantined = (layout: ReleaseLayout, stage = 'fetch') =>
    readNdjson<QuarantineRecord>(layout.quarantineFile('commercial-000000', stage));

  before(async () => {
    bucket = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-bucket-'));
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-data-'));
    for (let i = 1; i <= 6; i++)
      await writeSyntheticArticle(bucket, { pmcid: 100 + i, figures: 2, imageBytes: 20_000 });
    await writeSyntheticInventory(bucket, '2026-11-01');
    mirror = await startMirrorServer(bucket);
    tuning = setFetchTuning({ attempts: 3, backoffMs: 5, backoffMaxMs: 20, timeoutMs: 2_000 });
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
    // Each test starts with an empty download cache, so every object is really fetched.
    fs.rmSync(path.join(dataDir, 'cache'), { recursive: true, force: true });
  });

  it('retries a connection dropped mid-body and keeps only the whole file', async () => {
    const { rel, unit, layout } = await planned();
    const key = unit.articles[0]!.xml.key;
    mirror.faults.push({ match: key, fault: { kind: 'drop', afterBytes: 100 }, times: 1 });
    const r = await fetchArticles({ release: rel, unitId: unit.unitId });
    assert.deepEqual([r.fetched, r.failed], [6, 0]);
    const gets = mirror.requests.filter((q) => q.key === key);
    assert.deepEqual(
      gets.map((q) => q.fault ?? 'ok'),
      ['drop', 'ok'],
    );
    const file = articleXmlPath(layout.unitDir(unit.unitId), unit.articles[0]!.pmcid, 1);
    assert.equal(md5(fs.readFileSync(file)), unit.articles[0]!.xml.md5);
    assert.deepEqual(
      files(layout.unitDir(unit.unitId)).filter((f) => f.includes('.partial')),
      [],
    );
  });

  it('retries 500s with backoff, then succeeds', async () => {
    const { rel, unit } = await planned();
    const key = unit.articles[1]!.xml.key;
    mirror.faults.push({ match: key, fault: { kind: 'status', status: 500 }, times: 2 });
    const r = await fetchArticles({ release: rel, unitId: unit.unitId });
    assert.deepEqual([r.fetched, r.failed], [6, 0]);
    assert.deepEqual(
      mirror.requests.filter((q) => q.key === key).map((q) => q.status),
      [500, 500, 200],
    );
  });

  it('lets a persistent 5xx escape the activity (Temporal retries it) and leaves no file, whole or partial', async () => {
    const { rel, unit, layout } = await planned();
    const key = unit.articles[2]!.xml.key;
    mirror.faults.push({ match: key, fault: { kind: 'status', status: 503 } });
    await assert.rejects(
      fetchArticles({ release: rel, unitId: unit.unitId }),
      (err: unknown) => err instanceof SourceError && err.kind === 'server' && err.retryable,
    );
    assert.equal(mirror.requests.filter((q) => q.key === key).length, 3, 'three tries inside the activity');
    const unitDir = layout.unitDir(unit.unitId);
    assert.equal(fs.existsSync(articleXmlPath(unitDir, unit.articles[2]!.pmcid, 1)), false);
    assert.deepEqual(
      files(unitDir).filter((f) => f.includes('.partial')),
      [],
    );
    assert.equal(
      fs.existsSync(layout.stageManifest(unit.unitId, 'fetch')),
      false,
      'no manifest: the stage is not done',
    );
    // The next attempt (what Temporal's retry does) reuses the files already in place and fetches the rest.
    mirror.faults.length = 0;
    mirror.requests.length = 0;
    const r = await fetchArticles({ release: rel, unitId: unit.unitId });
    assert.equal(r.fetched + r.reused, 6);
    assert.ok(r.reused >= 1);
    assert.equal(mirror.requests.filter((q) => q.key.endsWith('.xml')).length, r.fetched);
  });

  it('times out a trickling body and retries it', async () => {
    const { unit } = await planned();
    const a = unit.articles[3]!;
    const prev = setFetchTuning({ timeoutMs: 300 });
    try {
      // A body that stalls (nothing for longer than the timeout): an idle timeout, then a retry.
      mirror.faults.push({ match: a.media[0]!.key, fault: { kind: 'slow', bytesPerTick: 100, tickMs: 400 }, times: 1 });
      const src = new HttpPmcSource(mirror.baseUrl, 300, 600);
      const file = path.join(dataDir, 'slow', 'f1.jpg');
      const t0 = Date.now();
      assert.equal(await placeObject(src, a.media[0]!, file), 'fetched');
      assert.ok(Date.now() - t0 >= 300, 'waited for the timeout');
      assert.deepEqual(
        mirror.requests.filter((q) => q.key === a.media[0]!.key).map((q) => q.fault ?? 'ok'),
        ['slow', 'ok'],
      );
      assert.equal(md5(fs.readFileSync(file)), a.media[0]!.md5);
      // A body that trickles fast enough to stay alive but would take 10 s: the deadline (0.6 s) ends each try,
      // every try is retried, and no partial file is ever left.
      mirror.faults.push({ match: a.media[1]!.key, fault: { kind: 'slow', bytesPerTick: 100, tickMs: 50 } });
      const file2 = path.join(dataDir, 'slow', 'f2.jpg');
      await assert.rejects(
        placeObject(src, a.media[1]!, file2),
        (err: unknown) => err instanceof TransientFetchError && /timed out|timeout/i.test(err.message),
      );
      assert.deepEqual(files(path.join(dataDir, 'slow')), ['f1.jpg']);
    } finally {
      setFetchTuning(prev);
    }
  });

  it('retries an md5 mismatch, and quarantines a body that never matches its md5 (no file kept)', async () => {
    const { rel, unit, layout } = await planned();
    const once = unit.articles[4]!.xml.key;
    const always = unit.articles[5]!.xml.key;
    mirror.faults.push(
      { match: once, fault: { kind: 'corrupt' }, times: 1 },
      { match: always, fault: { kind: 'corrupt' } },
    );
    const r = await fetchArticles({ release: rel, unitId: unit.unitId });
    assert.deepEqual([r.fetched, r.failed], [5, 1]);
    assert.deepEqual(
      mirror.requests.filter((q) => q.key === once).map((q) => q.fault ?? 'ok'),
      ['corrupt', 'ok'],
    );
    assert.equal(mirror.requests.filter((q) => q.key === always).length, 3);
    const q = await quarantined(layout);
    assert.deepEqual(
      q.map((x) => [x.article, x.stage, x.reason]),
      [[`PMC106.1`, 'fetch', 'xml-checksum']],
    );
    assert.match(q[0]!.detail, /md5 mismatch/);
    assert.equal(fs.existsSync(articleXmlPath(layout.unitDir(unit.unitId), 'PMC106', 1)), false);
  });

  it('quarantines 404 and 403 at once, without retries, recorded per article', async () => {
    const { rel, unit, layout } = await planned();
    const gone = unit.articles[0]!.xml.key;
    const denied = unit.articles[1]!.xml.key;
    mirror.faults.push(
      { match: gone, fault: { kind: 'status', status: 404 } },
      { match: denied, fault: { kind: 'status', status: 403 } },
    );
    const r = await fetchArticles({ release: rel, unitId: unit.unitId });
    assert.deepEqual([r.fetched, r.failed], [4, 2]);
    assert.equal(mirror.requests.filter((q) => q.key === gone).length, 1);
    assert.equal(mirror.requests.filter((q) => q.key === denied).length, 1);
    assert.deepEqual((await quarantined(layout)).map((x) => [x.article, x.reason]).sort(), [
      ['PMC101.1', 'xml-not-found'],
      ['PMC102.1', 'xml-forbidden'],
    ]);
  });

  it('bounds the downloads in flight per worker process', async () => {
    const { unit } = await planned();
    const prev = setFetchTuning({ perWorker: 3 });
    try {
      assert.equal(downloadLimiter().limit, 3);
      const objs = unit.articles.flatMap((a) => a.media);
      for (const o of objs)
        mirror.faults.push({ match: o.key, fault: { kind: 'slow', bytesPerTick: 8_000, tickMs: 10 }, times: 1 });
      mirror.stats.maxInFlight = 0;
      const src = new HttpPmcSource(mirror.baseUrl, 5_000);
      // Two "activities" at once, 8 each: the worker bound still holds.
      await Promise.all(
        [0, 1].map((k) =>
          Promise.all(
            objs
              .filter((_, i) => i % 2 === k)
              .map((o, i) => placeObject(src, o, path.join(dataDir, 'bound', String(k), `${i}.jpg`))),
          ),
        ),
      );
      assert.equal(mirror.stats.maxInFlight, 3);
    } finally {
      setFetchTuning(prev);
    }
  });

  it('a download waiting for a worker slot leaves the line when its activity is cancelled; the slot goes on', async () => {
    const limiter = new Limiter(1);
    let release!: () => void;
    const holder = limiter.run(() => new Promise<string>((r) => (release = () => r('held'))));
    const cancel = new AbortController();
    const started: string[] = [];
    const waiting = limiter.run(async () => void started.push('cancelled one'), cancel.signal);
    const next = limiter.run(async () => (started.push('next'), 'next'));
    assert.equal(limiter.queued, 2);
    cancel.abort(new Error('activity cancelled'));
    await assert.rejects(waiting, /activity cancelled/);
    assert.equal(limiter.queued, 1, 'the cancelled waiter left the line');
    release();
    assert.deepEqual(await Promise.all([holder, next]), ['held', 'next']);
    assert.deepEqual(started, ['next']);
    assert.deepEqual([limiter.inFlight, limiter.queued], [0, 0], 'no slot lost');
    await assert.rejects(
      limiter.run(async () => 1, AbortSignal.abort(new Error('gone'))),
      /gone/,
    );
    assert.equal(limiter.inFlight, 0);
  });

  it('never downloads an object twice: the content-addressed cache serves every later unit or release', async () => {
    const first = await planned();
    const r1 = await fetchArticles({ release: first.rel, unitId: first.unit.unitId });
    assert.equal(r1.fetched, 6);
    const cache = new ObjectCache(dataDir);
    for (const a of first.unit.articles) assert.ok(fs.existsSync(cache.pathOf(a.xml.md5!)));
    mirror.requests.length = 0;
    const second = await planned();
    const r2 = await fetchArticles({ release: second.rel, unitId: second.unit.unitId });
    assert.deepEqual([r2.fetched, r2.cached, r2.failed], [0, 6, 0]);
    assert.equal(mirror.requests.filter((q) => q.key.endsWith('.xml')).length, 0, 'no XML GET for the second release');
    // A damaged cache entry is dropped and the object downloaded again.
    const victim = second.unit.articles[0]!;
    fs.rmSync(articleXmlPath(second.layout.unitDir(second.unit.unitId), victim.pmcid, 1));
    fs.rmSync(cache.pathOf(victim.xml.md5!));
    fs.writeFileSync(cache.pathOf(victim.xml.md5!), 'tampered');
    const src = new HttpPmcSource(mirror.baseUrl, 5_000);
    assert.equal(
      await placeObject(src, victim.xml, articleXmlPath(second.layout.unitDir(second.unit.unitId), victim.pmcid, 1), {
        cache,
      }),
      'fetched',
    );
    assert.equal(md5(fs.readFileSync(cache.pathOf(victim.xml.md5!))), victim.xml.md5);
  });

  it('withRetries gives up at once on a non-retryable error and after N tries on a retryable one', async () => {
    let calls = 0;
    await assert.rejects(
      withRetries(async () => {
        calls++;
        throw new SourceError('gone', 'not-found', false, 'k');
      }),
      /gone/,
    );
    assert.equal(calls, 1);
    calls = 0;
    await assert.rejects(
      withRetries(
        async () => {
          calls++;
          throw new SourceError('reset', 'network', true, 'k');
        },
        { attempts: 4 },
      ),
      /reset/,
    );
    assert.equal(calls, 4);
  });
});
