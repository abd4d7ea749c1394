import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar';
import { Worker } from '@temporalio/worker';
import { readNdjson, sha256File } from '../activities/common/files';
import { temporalCliPath } from '../config/dev-server';
import { testPython } from '../config/paths';
import type { QuarantineRecord } from '../activities/common/quarantine';
import { readSamplesParquet, type SampleRow } from '../activities/parquet/writer';
import { PUBLISHED_KEYS } from '../activities/shard/sample-json';
import { startRelease, releaseStatus } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import type { ReleaseResult } from '../workflows/release';
import { createReleaseTestEnv, type ReleaseTestEnv } from './support/release-env';

interface TarMemberRead {
  name: string;
  size: number;
  mode: number;
  data: Buffer;
}

async function readTar(file: string): Promise<TarMemberRead[]> {
  const members: TarMemberRead[] = [];
  await tar.t({
    file,
    strict: true,
    onReadEntry: (entry) => {
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () =>
        members.push({ name: entry.path, size: entry.size ?? 0, mode: entry.mode ?? 0, data: Buffer.concat(chunks) }),
      );
    },
  });
  return members;
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
}

describe('the sample release end to end on a real Temporal dev server', function () {
  this.timeout(300_000);
  let t: ReleaseTestEnv;
  let result: ReleaseResult;
  const releaseId = 'e2e-sample';

  before(async () => {
    t = await createReleaseTestEnv({ faults: { corruptImages: 1, missingImages: 1 } });
    await t.startWorkers();
    const outcome = await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, releaseId));
    assert.equal(outcome.kind, 'started');
    result = await t.env.client.workflow.getHandle(outcome.workflowId).result();
  });
  after(async () => {
    await t?.teardown();
  });

  it('completes and the server reports it Completed', async () => {
    const status = await releaseStatus(t.env.client, releaseId);
    assert.equal(status?.status, 'COMPLETED');
    assert.ok(result.summary.samples > 0);
    assert.ok(status!.historyLength < 200, `release history ${status!.historyLength} events`);
  });

  it('plans every sample article into the three license subsets', () => {
    const nxml = fs.readdirSync(path.join(t.dataDir, 'sample-mirror')).filter((d) => /^PMC\d+\.\d+$/.test(d));
    assert.equal(result.plan.selectedArticles, nxml.length);
    for (const subset of ['commercial', 'noncommercial', 'other'] as const)
      assert.ok(result.plan.subsets[subset].articles > 0, `${subset} has articles`);
  });

  it('writes shards whose members read back, with samples = figures - rejected figures', async () => {
    const root = path.join(t.dataDir, 'releases', releaseId);
    let samples = 0;
    for (const subset of ['commercial', 'noncommercial', 'other'] as const) {
      const shards = fs
        .readdirSync(path.join(root, 'webdataset', subset))
        .filter((f) => f.endsWith('.tar'))
        .sort();
      assert.equal(shards.length, result.summary.subsets[subset].shards);
      assert.deepEqual(
        shards,
        shards.map((_, i) => `${String(i).padStart(6, '0')}.tar`),
        'contiguous shard numbering',
      );
      const sizes = JSON.parse(fs.readFileSync(path.join(root, 'webdataset', subset, 'sizes.json'), 'utf8')) as Record<
        string,
        number
      >;
      for (const shard of shards) {
        const members = await readTar(path.join(root, 'webdataset', subset, shard));
        assert.equal(members.length % 3, 0);
        const keys = [...new Set(members.map((m) => m.name.split('.')[0]!))];
        assert.equal(keys.length * 3, members.length);
        assert.equal(sizes[shard], keys.length);
        for (let i = 0; i < members.length; i += 3) {
          const [jpg, json, txt] = members.slice(i, i + 3);
          assert.deepEqual(
            [jpg!.name, json!.name, txt!.name].map((n) => n.split('.').slice(1).join('.')),
            ['jpg', 'json', 'txt'],
          );
          assert.equal(jpg!.data.subarray(0, 3).toString('hex'), 'ffd8ff', `${jpg!.name} is a JPEG`);
          assert.equal(jpg!.mode, 0o444);
          const doc = JSON.parse(json!.data.toString('utf8')) as Record<string, unknown>;
          assert.deepEqual(Object.keys(doc), PUBLISHED_KEYS);
          assert.ok(txt!.data.length > 0, 'caption present');
          assert.ok(/^[\x00-\x7f]*$/.test(json!.data.toString('latin1')), 'json is ASCII (Python ensure_ascii)');
        }
        samples += keys.length;
        const rows = await readSamplesParquet(path.join(root, 'parquet', subset, shard.replace('.tar', '.parquet')));
        assert.deepEqual(
          rows.map((r) => r.key),
          keys,
          'parquet rows = tar samples, same order',
        );
        const arrow = JSON.parse(
          execFileSync(
            testPython(),
            [
              '-c',
              'import pyarrow.parquet as pq,sys,json; t=pq.read_table(sys.argv[1]); print(json.dumps({"keys": t.column("key").to_pylist(), "mesh": str(t.schema.field("article_mesh_terms").type)}))',
              path.join(root, 'parquet', subset, shard.replace('.tar', '.parquet')),
            ],
            { encoding: 'utf8' },
          ),
        ) as { keys: string[]; mesh: string };
        assert.deepEqual(arrow.keys, keys, 'pyarrow reads the same rows');
        assert.match(arrow.mesh, /^list</);
        for (const [j, row] of rows.entries()) {
          assert.equal(row.caption, members[j * 3 + 2]!.data.toString('utf8'));
          assert.equal(row.image_bytes_size, members[j * 3]!.data.length);
        }
      }
    }
    assert.equal(samples, result.summary.samples);
    assert.equal(result.summary.samples, result.summary.figures - result.summary.rejected);
  });

  it('quarantines every rejected figure with its article, stage and reason, including injected faults', async () => {
    const records = await readNdjson<QuarantineRecord>(
      path.join(t.dataDir, 'releases', releaseId, 'report', 'quarantine.ndjson'),
    );
    assert.equal(records.filter((r) => r.figure).length, result.summary.rejected);
    for (const r of records) {
      assert.ok(r.article && r.stage && r.reason && r.detail, JSON.stringify(r));
    }
    assert.ok(
      records.some((r) => r.stage === 'images' && r.reason === 'corrupt'),
      'the truncated image is quarantined as corrupt',
    );
    assert.ok(
      records.some((r) => r.stage === 'media' && r.reason === 'image-not-found'),
      'the image missing from the bucket is quarantined',
    );
    // The sample's one figure without a caption of its own was PMC12491691's graphical abstract: it is now read as
    // one (captioned by the abstract's text) and kept out of the published figures with that reason.
    assert.ok(
      records.some((r) => r.stage === 'parse' && r.reason === 'graphical-abstract' && r.article === 'PMC12491691.1'),
      'a graphical abstract is quarantined with its role',
    );
  });

  it("publishes the project's own sample articles with linear MathML captions, their markup, and range and title mentions", async () => {
    const root = path.join(t.dataDir, 'releases', releaseId);
    const rows: SampleRow[] = [];
    for (const subset of ['commercial', 'noncommercial'] as const) {
      for (const f of fs
        .readdirSync(path.join(root, 'parquet', subset))
        .filter((n) => n.endsWith('.parquet'))
        .sort())
        rows.push(...(await readSamplesParquet(path.join(root, 'parquet', subset, f))));
    }
    for (const [pmcid, subset, cultures] of [
      ['PMC90000001', 'commercial', 12],
      ['PMC90000002', 'noncommercial', 24],
    ] as const) {
      const own = rows.filter((r) => r.key.startsWith(`${pmcid}_1_`));
      // three figures published; the graphical abstract is quarantined with its role (figures.graphicalAbstracts off)
      assert.equal(own.length, 3, `${pmcid} samples`);
      assert.ok(own.every((r) => r.subset === subset));
      const f1 = own.find((r) => r.caption.startsWith('Growth of the first cohort'))!;
      assert.match(f1.caption, /S = C\/M \+ A\/N/);
      assert.equal(f1.caption_mathml.length, 2);
      assert.match(f1.caption_mathml[0]!, /^<mml:math><mml:mi>S<\/mml:mi>/);
      assert.ok(f1.article_text.includes('(1) log CV = −0.5 log Frequency + 2'));
      assert.equal(f1.article_mathml.length, 5);
      const f2 = own.find((r) => r.caption.startsWith('Growth of the second cohort'))!;
      assert.deepEqual(f2.image_context.find((c) => c.image_id === 'f2')?.paragraphs, [
        'Growth curves in [[Figure 2]]',
        `We measured growth in ${cultures} cultures. The whole time course is shown in [[Figs 1–3]], and the fitted model is S = C/M + A/N.`,
      ]);
    }
    const records = await readNdjson<QuarantineRecord>(path.join(root, 'report', 'quarantine.ndjson'));
    assert.ok(records.some((r) => r.article === 'PMC90000001.1' && r.reason === 'graphical-abstract'));
  });

  it('enriches articles from the E-utilities stand-in within its rate limit', () => {
    assert.ok(result.summary.enrichment.pmids > 0);
    assert.equal(
      t.eutils.stats.rejected429,
      0,
      `no request was refused for going over the rate: ${JSON.stringify(t.eutils.stats.log.map((l) => [l.t, l.status, l.ids.length]))}`,
    );
    assert.ok(
      t.eutils.stats.perSecondMax <= 3,
      `at most 3 requests in any one-second window (saw ${t.eutils.stats.perSecondMax})`,
    );
    assert.ok(t.eutils.stats.log.every((l) => l.method === 'POST'));
    const e = result.summary.enrichment;
    assert.equal(e.returned + e.notReturned, e.pmids, 'every PMID asked for is accounted for');
    const notes = fs
      .readFileSync(path.join(t.dataDir, 'releases', releaseId, 'report', 'enrichment.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean);
    assert.equal(
      notes.length,
      e.notReturned + e.withoutPmid,
      'each article published without PubMed data is listed with its reason',
    );
  });

  it('publishes a Hub-shaped folder with a dataset card', () => {
    const hub = result.publish.target;
    const files = listFiles(hub);
    assert.ok(files.includes('README.md'));
    for (const subset of ['commercial', 'noncommercial', 'other']) {
      assert.ok(files.includes(`${subset}/000000.tar`), `${subset}/000000.tar published`);
      assert.ok(files.includes(`parquet/${subset}/000000.parquet`));
    }
    const card = fs.readFileSync(path.join(hub, 'README.md'), 'utf8');
    assert.match(card, /^---\nlicense: other\n/);
    assert.match(card, /config_name: commercial\n/);
  });

  it('gives the release, its subset drivers and its units a summary the Temporal UI shows', async () => {
    const d = (id: string) => t.env.client.workflow.getHandle(id).describe();
    assert.equal(await (await d(`release-${releaseId}`)).staticSummary(), `BIOMEDICA release ${releaseId}`);
    assert.match(
      (await (await d(`release-${releaseId}/subset-commercial`)).staticSummary())!,
      /^commercial subset of release e2e-sample: \d+ units, \d+ articles$/,
    );
    const unit = await d(`release-${releaseId}/commercial-000000`);
    assert.match((await unit.staticSummary())!, /^unit 1 of \d+ \(commercial\) of release e2e-sample$/);
    assert.match(
      (await unit.staticDetails())!,
      /^articles: plan\/units\/commercial-000000\.json; outputs: webdataset\/commercial\/000000\*\.tar/,
    );
  });

  it('replays every workflow history of the run deterministically', async () => {
    const histories = t.env.client.workflow
      .list({ query: `WorkflowId STARTS_WITH "release-${releaseId}"` })
      .intoHistories();
    let replayed = 0;
    for await (const r of Worker.runReplayHistories({ workflowsPath: require.resolve('../workflows') }, histories)) {
      assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
      replayed++;
    }
    const subsets = Object.values(result.plan.subsets).filter((s) => s.units > 0);
    assert.equal(
      replayed,
      1 + subsets.length + subsets.reduce((n, s) => n + s.units, 0),
      'the release, each subset driver and each unit workflow',
    );
    // RECORD_HISTORY=test/histories re-records the histories test/replay.test.ts replays (docs/architecture.md).
    const record = process.env.RECORD_HISTORY;
    if (record) {
      const show = (id: string) =>
        execFileSync(
          temporalCliPath(),
          ['workflow', 'show', '-w', id, '--output', 'json', '--address', t.env.address, '--namespace', 'default'],
          { encoding: 'utf8', maxBuffer: 64 << 20 },
        );
      for (const [file, id] of [
        [`release-${releaseId}.json`, `release-${releaseId}`],
        ['subset-commercial-sample.json', `release-${releaseId}/subset-commercial`],
        ['unit-commercial-000000-sample.json', `release-${releaseId}/commercial-000000`],
      ])
        fs.writeFileSync(path.join(record, file), show(id!));
    }
  });

  it('starting the finished release again reports it finished and changes no output byte', async () => {
    const root = path.join(t.dataDir, 'releases', releaseId);
    const before = new Map(
      await Promise.all(listFiles(root).map(async (f) => [f, await sha256File(path.join(root, f))] as const)),
    );
    const again = await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, releaseId));
    assert.equal(again.kind, 'already-completed');
    const after = new Map(
      await Promise.all(listFiles(root).map(async (f) => [f, await sha256File(path.join(root, f))] as const)),
    );
    assert.deepEqual(after, before);
  });
});
