import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { ndjson, readJson, writeFileAtomic, writeJsonAtomic } from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import { pubmedBatchPath, type PubmedBatchFile } from '../activities/enrich/activity';
import { loadDevServerConfig, temporalCliPath } from '../config/dev-server';
import { fixturePaths, projectRoot } from '../config/paths';
import { ReleaseInputSchema } from '../config/release';
import { SEARCH_ATTRIBUTES } from '../config/task-queues';
import { startEutilsStandin, type EutilsStandin } from '../sample/eutils-standin';
import { installQuietRuntime } from './support/runtime';

// The PMIDs whose real PubMed records are recorded in the fixtures.
const RECORDED_PMIDS = ['9997', '12091962', '27797938', '30108519'];

describe('PubMed enrichment with 4 entrez workers stays within NCBI rate limit', function () {
  this.timeout(240_000);
  let env: TestWorkflowEnvironment;
  let eutils: EutilsStandin;
  let dataDir: string;

  before(async () => {
    installQuietRuntime();
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        searchAttributes: Object.values(SEARCH_ATTRIBUTES).map((n) =>
          defineSearchAttributeKey(n, SearchAttributeType.KEYWORD),
        ),
        extraArgs: Object.entries(loadDevServerConfig().dynamicConfig).flatMap(([k, v]) => [
          '--dynamic-config-value',
          `${k}=${JSON.stringify(v)}`,
        ]),
      },
    });
    eutils = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'entrez-rate-'));
  });
  after(async () => {
    await eutils?.close();
    await env?.teardown();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps the API key in the worker environment: NCBI gets it, history and worker logs never show it', async () => {
    const secret = 'e2e-ncbi-key-7f3a91c2';
    const release = ReleaseInputSchema.parse({
      releaseId: 'secret',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: dataDir },
      entrez: { batchSize: 2 },
    });
    const layout = new ReleaseLayout(dataDir, 'secret');
    const unitId = 'other-000000';
    const articles = RECORDED_PMIDS.map((pmid, j) => ({ pmcid: `PMC${j + 1}`, version: 1, pmid }));
    await writeJsonAtomic(layout.unitFile(unitId), { unitId, subset: 'other', index: 0, articles });
    await writeFileAtomic(
      path.join(layout.unitDir(unitId), 'articles.ndjson'),
      ndjson(articles.map((a) => ({ article: `${a.pmcid}.1`, planned: a, record: { pmid: null }, figures: [] }))),
    );
    eutils.inject({ status502: 1 }); // one failure, so an error message passes through history too
    const before = eutils.stats.log.length;
    const logs: string[] = [];
    const worker = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(projectRoot, 'cli', 'main.ts'), 'worker', '--pool', 'entrez'],
      {
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: env.address,
          NCBI_EUTILS_URL: eutils.baseUrl,
          NCBI_EMAIL: 'tests@localhost',
          NCBI_API_KEY: secret,
          LOG_LEVEL: 'INFO',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    worker.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
    worker.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        worker.stdout!.on('data', (d: Buffer) => d.toString().includes('running') && resolve());
        worker.once('exit', (code) => reject(new Error(`entrez worker exited with ${code}`)));
      });
      const workflowWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'entrez-secret-test',
        workflowsPath: require.resolve('./workflows/entrez-load'),
      });
      const returned = await workflowWorker.runUntil(
        env.client.workflow.execute('entrezLoadWorkflow', {
          taskQueue: 'entrez-secret-test',
          workflowId: 'entrez-secret',
          args: [release, [unitId], 2],
        }),
      );
      assert.equal(returned, RECORDED_PMIDS.length);
    } finally {
      worker.kill('SIGTERM');
    }
    assert.ok(
      eutils.stats.log.slice(before).some((l) => l.apiKeyPresent),
      'the key reached NCBI',
    );
    const history = JSON.stringify(await env.client.workflow.getHandle('entrez-secret').fetchHistory());
    assert.ok(history.includes('Eutils-server'), 'the injected failure is in history');
    assert.ok(!history.includes(secret), 'the key is not in history');
    assert.ok(logs.join('').length > 0 && !logs.join('').includes(secret), 'the key is not in the worker log');
  });

  it('sends 64 requests through 4 workers, never more than 3 in any second, and every article gets its record despite 429s and 502s', async () => {
    const release = ReleaseInputSchema.parse({
      releaseId: 'rate',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: dataDir },
      entrez: { batchSize: 1 },
    });
    const layout = new ReleaseLayout(dataDir, 'rate');
    const units = Array.from({ length: 16 }, (_, i) => `commercial-${String(i).padStart(6, '0')}`);
    for (const [index, unitId] of units.entries()) {
      const articles = RECORDED_PMIDS.map((pmid, j) => ({ pmcid: `PMC${index * 10 + j + 1}`, version: 1, pmid }));
      await writeJsonAtomic(layout.unitFile(unitId), { unitId, subset: 'commercial', index, articles });
      // What the parse stage leaves for enrichment: one line per article with its PMID.
      const lines = articles.map((a) => ({ article: `${a.pmcid}.1`, planned: a, record: { pmid: null }, figures: [] }));
      await writeFileAtomic(path.join(layout.unitDir(unitId), 'articles.ndjson'), ndjson(lines));
    }
    // Four separate worker processes on the entrez queue, as on four machines: only the queue's server-side rate binds them.
    const workerEnv: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: env.address,
      NCBI_EUTILS_URL: eutils.baseUrl,
      NCBI_EMAIL: 'tests@localhost',
      LOG_LEVEL: 'ERROR',
    };
    delete workerEnv.NCBI_API_KEY;
    const workers = Array.from({ length: 4 }, () =>
      spawn(
        process.execPath,
        ['--import', 'tsx', path.join(projectRoot, 'cli', 'main.ts'), 'worker', '--pool', 'entrez'],
        { env: workerEnv, stdio: ['ignore', 'pipe', 'inherit'] },
      ),
    );
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.stdout!.on('data', (d: Buffer) => d.toString().includes('running') && resolve());
              w.once('exit', (code) => reject(new Error(`entrez worker exited with ${code}`)));
            }),
        ),
      );
      const workflowWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'entrez-load-test',
        workflowsPath: require.resolve('./workflows/entrez-load'),
      });
      eutils.inject({ rateLimitBurst: 4, status502: 4 });
      const returned = await workflowWorker.runUntil(
        env.client.workflow.execute('entrezLoadWorkflow', {
          taskQueue: 'entrez-load-test',
          workflowId: 'entrez-load',
          args: [release, units, RECORDED_PMIDS.length],
        }),
      );
      assert.equal(returned, units.length * RECORDED_PMIDS.length, 'every article got its PubMed record');
    } finally {
      for (const w of workers) w.kill('SIGTERM');
    }
    const ok = eutils.stats.log.filter((l) => l.status === 200);
    assert.ok(ok.length >= 64, `${ok.length} successful requests`);
    assert.ok(eutils.stats.log.filter((l) => l.status === 429).length >= 4, 'the injected 429s were answered');
    assert.ok(eutils.stats.log.filter((l) => l.status === 502).length >= 4, 'the injected 502s were answered');
    assert.ok(
      eutils.stats.perSecondMax <= 3,
      `at most 3 requests in any one-second window, saw ${eutils.stats.perSecondMax}`,
    );
    for (const unitId of units) {
      for (let b = 0; b < RECORDED_PMIDS.length; b++) {
        const file = await readJson<PubmedBatchFile>(pubmedBatchPath(layout.unitDir(unitId), b));
        assert.equal(file.failed, null);
        assert.deepEqual(
          file.records.map((r) => r.pmid),
          [RECORDED_PMIDS[b]],
        );
      }
    }
  });
});
