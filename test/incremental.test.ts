import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { readNdjson } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import { fetchArticles, fetchFigureMedia } from '../activities/fetch/activity';
import { setFetchTuning, type FetchTuning } from '../activities/fetch/retry';
import { parseArticles } from '../activities/parse/activity';
import { planRelease, type PlanSummary } from '../activities/plan/activity';
import type { Exclusion } from '../activities/plan/plan';
import {
  removeSyntheticArticle,
  startMirrorServer,
  writeSyntheticArticle,
  writeSyntheticInventory,
  type MirrorServer,
} from '../sample/mirror-server';

describe('incremental releases against the previous plan and the inventory ETags', function () {
  this.timeout(60_000);
  let bucket: string;
  let dataDir: string;
  let mirror: MirrorServer;
  let tuning: FetchTuning;
  const rel = (releaseId: string, previousRelease?: string): ReleaseInput =>
    ReleaseInputSchema.parse({
      releaseId,
      dataDir,
      source: { kind: 'pmc-cloud-http', baseUrl: mirror.baseUrl },
      units: { maxArticles: 100 },
      entrez: { enabled: false },
      ...(previousRelease ? { previousRelease } : {}),
    });
  let a: PlanSummary;
  let b: PlanSummary;

  /** Plans, fetches, parses and fetches the media of every unit; returns the GETs it made, by kind. */
  async function runThrough(r: ReleaseInput, s: PlanSummary): Promise<{ xml: string[]; media: string[] }> {
    mirror.requests.length = 0;
    for (const [subset, v] of Object.entries(s.subsets)) {
      for (let i = 0; i < v.units; i++) {
        const task = { release: r, unitId: `${subset}-${String(i).padStart(6, '0')}` };
        await fetchArticles(task);
        await parseArticles(task);
        await fetchFigureMedia(task);
      }
    }
    const gets = mirror.requests.filter((q) => q.method === 'GET').map((q) => q.key);
    return { xml: gets.filter((k) => k.endsWith('.xml')).sort(), media: gets.filter((k) => k.endsWith('.jpg')).sort() };
  }

  before(async () => {
    bucket = fs.mkdtempSync(path.join(os.tmpdir(), 'incr-bucket-'));
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'incr-data-'));
    for (let id = 201; id <= 210; id++) await writeSyntheticArticle(bucket, { pmcid: id, figures: 2 });
    await writeSyntheticArticle(bucket, { pmcid: 211, version: 1 });
    await writeSyntheticInventory(bucket, '2026-11-01');
    mirror = await startMirrorServer(bucket);
    tuning = setFetchTuning({ attempts: 2, backoffMs: 5, backoffMaxMs: 10 });

    a = await planRelease(rel('2026-a'));
    const firstRun = await runThrough(rel('2026-a'), a);
    assert.equal(firstRun.xml.length, 11);
    assert.equal(firstRun.media.length, 22, 'every figure image of the first release is downloaded once');

    // A month later: one article updated, one retracted, one removed, a new version of one, one new article.
    await writeSyntheticArticle(bucket, { pmcid: 201, figures: 2, revision: 1 });
    await writeSyntheticArticle(bucket, { pmcid: 202, figures: 2, retracted: true });
    await removeSyntheticArticle(bucket, 203);
    await writeSyntheticArticle(bucket, { pmcid: 211, version: 2, figures: 2 });
    await writeSyntheticArticle(bucket, { pmcid: 220, figures: 1 });
    await writeSyntheticInventory(bucket, '2026-12-01');
    mirror.requests.length = 0;
    b = await planRelease(rel('2026-b', '2026-a'));
  });
  after(async () => {
    setFetchTuning(tuning);
    await mirror?.close();
    fs.rmSync(bucket, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('reports new, changed, unchanged, removed and newly retracted versions', () => {
    assert.equal(b.inventoryManifest, 'inventory-reports/pmc-oa-opendata/metadata/2026-12-01T01-00Z/manifest.json');
    assert.deepEqual(b.changes, {
      previousRelease: '2026-a',
      new: 2,
      changed: 2,
      unchanged: 8,
      removed: 1,
      newlyRetracted: 1,
    });
    assert.equal(a.changes!.new, 11);
  });

  it('reads the metadata of new and changed versions only', () => {
    const gets = mirror.requests
      .filter((q) => q.key.startsWith('metadata/'))
      .map((q) => q.key)
      .sort();
    assert.deepEqual(gets, [
      'metadata/PMC201.1.json',
      'metadata/PMC202.1.json',
      'metadata/PMC211.2.json',
      'metadata/PMC220.1.json',
    ]);
    assert.equal(b.metadataFetched, 4);
  });

  it('plans exactly what a full plan of the same inventory plans', async () => {
    const full = await planRelease(rel('2026-b-full'));
    assert.equal(full.planHash, b.planHash);
    assert.deepEqual(full.subsets, b.subsets);
    assert.deepEqual(full.excluded, b.excluded);
    assert.deepEqual(b.excluded, { retracted: 1, 'superseded-version': 1 });
    const excluded = await readNdjson<Exclusion>(
      path.join(new ReleaseLayout(dataDir, '2026-b').planDir, 'excluded.ndjson'),
    );
    assert.deepEqual(
      excluded.map((e) => [e.key, e.reason]),
      [
        ['metadata/PMC202.1.json', 'retracted'],
        ['metadata/PMC211.1.json', 'superseded-version'],
      ],
    );
    assert.equal(b.selectedArticles, 10); // PMC201, PMC204-210, PMC211.2, PMC220
  });

  it('never downloads an unchanged object again: only changed and new XML and images are fetched', async () => {
    const got = await runThrough(rel('2026-b', '2026-a'), b);
    assert.deepEqual(got.xml, ['PMC201.1/PMC201.1.xml', 'PMC211.2/PMC211.2.xml', 'PMC220.1/PMC220.1.xml']);
    assert.deepEqual(got.media, [
      'PMC201.1/f1.jpg',
      'PMC201.1/f2.jpg',
      'PMC211.2/f1.jpg',
      'PMC211.2/f2.jpg',
      'PMC220.1/f1.jpg',
    ]);
    const fetch = JSON.parse(
      fs.readFileSync(new ReleaseLayout(dataDir, '2026-b').stageManifest('commercial-000000', 'fetch'), 'utf8'),
    ) as { result: { fetched: number; cached: number } };
    assert.deepEqual([fetch.result.fetched, fetch.result.cached], [3, 7]);
  });

  it('refuses a previous release that is missing, unfinished or the release itself, without retries', async () => {
    for (const [id, prev, why] of [
      ['2026-c', 'never-planned', /has no finished plan/],
      ['2026-d', '2026-d', /the release itself/],
    ] as const) {
      await assert.rejects(
        planRelease(rel(id, prev)),
        (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && why.test(err.message),
      );
    }
  });
});
