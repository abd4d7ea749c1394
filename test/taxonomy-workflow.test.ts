import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { annotateUnit, ensureAnnotationModels, releaseEmbedders } from '../activities/annotate/activity';
import {
  buildTaxonomyReviewPack,
  fitTaxonomyModel,
  sampleTaxonomyEmbeddings,
} from '../activities/annotate/taxonomy-activity';
import { parseTaxonomyModel } from '../activities/annotate/taxonomy';
import { temporalCliPath } from '../config/dev-server';
import { TASK_QUEUES } from '../config/task-queues';
import { fitTaxonomyWorkflowId, type FitTaxonomyResult } from '../workflows/taxonomy';
import { taxonomyFit, taxonomyImportLabels, taxonomyReviewPack } from '../cli/taxonomy';
import { installQuietRuntime } from './support/runtime';
import { buildSyntheticRelease } from './taxonomy-fixture';

describe('fitTaxonomyWorkflow on a dev server: sample on the gpu queue, fit and review pack on the cpu queue', function () {
  this.timeout(120_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'taxonomy-wf-'));
  let env: TestWorkflowEnvironment;

  before(async () => {
    installQuietRuntime();
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalCliPath() } },
    });
  });
  after(async () => {
    await env?.teardown();
    await releaseEmbedders();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writes the artifact and the review pack; a rerun and the CLI fit reuse them; the CLI imports labels and rebuilds the pack', async () => {
    const rel = await buildSyntheticRelease({ dataDir: path.join(tmp, 'data'), units: 2, figuresPerUnit: 10 });
    await ensureAnnotationModels(rel.release);
    for (const unitId of rel.units) await annotateUnit({ release: rel.release, unitId });
    const input = {
      release: rel.release,
      version: 'wf-k3',
      clusters: 3,
      pcaComponents: 4,
      maxSamples: 16,
      seed: 2,
      kmeansBatchSize: 8,
      perCluster: 4,
      thumbSize: 64,
    };

    // The same pools' queues as production, hosting only what this workflow uses; the workflow from the workflows folder.
    const connection = env.nativeConnection;
    const workers = await Promise.all([
      Worker.create({
        connection,
        taskQueue: TASK_QUEUES.gpu,
        activities: { sampleTaxonomyEmbeddings },
        maxConcurrentActivityTaskExecutions: 1,
      }),
      Worker.create({
        connection,
        taskQueue: TASK_QUEUES.cpu,
        activities: { fitTaxonomyModel, buildTaxonomyReviewPack },
      }),
      Worker.create({
        connection,
        taskQueue: TASK_QUEUES.workflows,
        workflowsPath: require.resolve('../workflows/taxonomy'),
      }),
    ]);
    const run = async (n: number): Promise<FitTaxonomyResult> =>
      env.client.workflow.execute('fitTaxonomyWorkflow', {
        taskQueue: TASK_QUEUES.workflows,
        workflowId: `${fitTaxonomyWorkflowId('synthetic', 'wf-k3')}-${n}`,
        args: [input],
      });
    const running = Promise.all(workers.map((w) => w.run()));
    let first: FitTaxonomyResult;
    let second: FitTaxonomyResult;
    const logged: string[] = [];
    const log = console.log;
    try {
      first = await run(1);
      second = await run(2);
      // The CLI: `taxonomy fit` with a release config file, through the same server and workers.
      const config = path.join(tmp, 'release.json');
      fs.writeFileSync(config, JSON.stringify(rel.release));
      console.log = (...a: unknown[]) => void logged.push(a.join(' '));
      try {
        const code = await taxonomyFit(
          [
            '--config',
            config,
            '--version',
            'wf-k3',
            '--clusters',
            '3',
            '--pca',
            '4',
            '--samples',
            '16',
            '--seed',
            '2',
            '--kmeans-batch',
            '8',
            '--per-cluster',
            '4',
            '--thumb',
            '64',
          ],
          { client: env.client },
        );
        assert.equal(code, 0);
      } finally {
        console.log = log;
      }
    } finally {
      workers.forEach((w) => w.shutdown());
      await running;
    }
    assert.match(logged.join('\n'), /started taxonomy-synthetic-wf-k3/);
    assert.match(
      logged.join('\n'),
      /taxonomy wf-k3: 3 clusters from 16 figures of 2 units \(16 stored embeddings, 0 embedded now\)/,
    );
    assert.match(logged.join('\n'), /artifact: .*taxonomy-wf-k3\.json \(existed\)/);
    assert.equal(first.version, 'wf-k3');
    assert.deepEqual(
      [first.sample.samples, first.sample.fromStored, first.sample.embeddedNow, first.fit.clusters, first.fit.reused],
      [16, 16, 0, 3, false],
    );
    const model = parseTaxonomyModel(JSON.parse(fs.readFileSync(first.taxonomyPath, 'utf8')));
    assert.equal(model.version, 'wf-k3');
    assert.equal(model.fit!.samples, 16);
    assert.ok(fs.existsSync(first.review.index) && fs.existsSync(first.review.labelsFile));
    assert.equal(first.review.clusters, 3);
    assert.ok(first.review.thumbnails > 0);
    assert.equal(second.fit.reused, true);
    assert.deepEqual(second.review.index, first.review.index);

    // `taxonomy import-labels` then `taxonomy review-pack` on the new version, paths relative to the data dir.
    const savedDataDir = process.env.BIOMEDICA_DATA_DIR;
    process.env.BIOMEDICA_DATA_DIR = rel.release.dataDir;
    const filled = path.join(tmp, 'filled.json');
    const label = {
      panel_type: 'single',
      panel_subtype: 'single panel',
      global_class: ['Plots and Charts'],
      local_class: ['bar chart'],
    };
    fs.writeFileSync(filled, JSON.stringify({ '0': label, '1': label, '2': label }));
    const out: string[] = [];
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    try {
      assert.equal(await taxonomyImportLabels(['--taxonomy', 'models/taxonomy-wf-k3.json', '--labels', filled]), 0);
      assert.equal(await taxonomyReviewPack(['--taxonomy', 'models/taxonomy-wf-k3-r1.json', '--per-cluster', '2']), 0);
    } finally {
      console.log = log;
      if (savedDataDir === undefined) delete process.env.BIOMEDICA_DATA_DIR;
      else process.env.BIOMEDICA_DATA_DIR = savedDataDir;
    }
    assert.match(out.join('\n'), /taxonomy wf-k3-r1 \(labels for 3 clusters, geometry of wf-k3\)/);
    assert.match(out.join('\n'), /"taxonomyPath": "models\/taxonomy-wf-k3-r1\.json"/);
    const r1 = parseTaxonomyModel(
      JSON.parse(fs.readFileSync(path.join(rel.release.dataDir, 'models', 'taxonomy-wf-k3-r1.json'), 'utf8')),
    );
    assert.deepEqual(r1.centroids, model.centroids);
    const packDir = path.join(path.dirname(first.review.dir), 'review-wf-k3-r1');
    assert.deepEqual(
      JSON.parse(fs.readFileSync(path.join(packDir, 'labels-to-fill.json'), 'utf8'))['2'],
      label,
      'pre-filled with the current labels',
    );
    assert.match(
      fs.readFileSync(path.join(packDir, 'index.html'), 'utf8'),
      /single \/ single panel; global: Plots and Charts; local: bar chart/,
    );
  });
});
