import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from '@temporalio/worker';
import { publishRelease } from '../activities/publish/activity';
import type { ReleaseSummary } from '../activities/publish/finalize';
import { commitHubBatch, planHubPublish } from '../activities/publish/hub-activity';
import type { PlanSummary } from '../activities/plan/activity';
import { startRelease } from '../cli/release';
import { ReleaseInputSchema, type ReleaseInput, type ReleaseInputArgs } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { buildSyntheticRelease } from '../sample/hub-standin';
import { publishProgressQuery, publishWorkflow } from '../workflows/publish';
import type { ReleaseResult } from '../workflows/release';
import { createHubTestEnv, type HubTestEnv } from './support/hub-env';

const REPO = 'biomedica/release-sample';

interface HistoryEvent {
  eventType: string;
  markerRecordedEventAttributes?: { markerName: string; details?: Record<string, { payloads: { data: string }[] }> };
  activityTaskScheduledEventAttributes?: { activityType: { name: string } };
  startChildWorkflowExecutionInitiatedEventAttributes?: { workflowId: string; workflowType: { name: string } };
}

/**
 * The release workflow's publish step on a real dev server. Everything before publishing is stubbed (no units):
 * the point is which path the publish step takes and that its histories replay; the stages have their own tests.
 */
describe('the release workflow publishes to the Hub through publishWorkflow ', function () {
  this.timeout(120_000);
  let t: HubTestEnv;
  const workers: Worker[] = [];
  let running: Promise<unknown>;

  const stubbed = (dataDir: string) => ({
    planRelease: async (r: ReleaseInput): Promise<PlanSummary> => ({
      releaseId: r.releaseId,
      inventoryManifest: 'inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json',
      inventoryRows: 0,
      selectedArticles: 0,
      excluded: {},
      subsets: {
        commercial: { units: 0, articles: 0, figureImages: 0 },
        noncommercial: { units: 0, articles: 0, figureImages: 0 },
        other: { units: 0, articles: 0, figureImages: 0 },
      },
      planHash: 'stub',
      metadataFetched: 0,
      changes: { previousRelease: null, new: 0, changed: 0, unchanged: 0, removed: 0, newlyRetracted: 0 },
      otherLicenses: {},
    }),
    finalizeRelease: async (r: ReleaseInput): Promise<ReleaseSummary> =>
      JSON.parse(
        fs.readFileSync(path.join(dataDir, 'releases', r.releaseId, 'report', 'summary.json'), 'utf8'),
      ) as ReleaseSummary,
    ensureAnnotationModels: async () => ({}),
  });

  before(async () => {
    t = await createHubTestEnv();
    // This test's activities run in this process, so the token is in this process's environment for its duration.
    process.env.HF_TOKEN = t.token;
    process.env.HF_COMMITS_PER_HOUR = '36000';
    const s = stubbed(t.dataDir);
    const base = { connection: t.env.nativeConnection, namespace: 'default' };
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: TASK_QUEUES.io,
        activities: { planRelease: s.planRelease, publishRelease, planHubPublish },
      }),
      await Worker.create({
        ...base,
        taskQueue: TASK_QUEUES.hub,
        activities: { commitHubBatch },
        maxTaskQueueActivitiesPerSecond: 10,
      }),
      await Worker.create({ ...base, taskQueue: TASK_QUEUES.cpu, activities: { finalizeRelease: s.finalizeRelease } }),
      await Worker.create({
        ...base,
        taskQueue: TASK_QUEUES.gpu,
        activities: { ensureAnnotationModels: s.ensureAnnotationModels },
      }),
    );
    running = Promise.all(workers.map((w) => w.run()));
  });
  after(async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await running?.catch(() => undefined);
    delete process.env.HF_TOKEN;
    delete process.env.HF_COMMITS_PER_HOUR;
    await t?.teardown();
  });

  const events = (workflowId: string) => (JSON.parse(t.historyJson(workflowId)) as { events: HistoryEvent[] }).events;

  it('publish.kind hub: a child publishWorkflow commits the release to the repo', async () => {
    const built = await buildSyntheticRelease(t.dataDir, 'hub-sample');
    const args: ReleaseInputArgs = {
      releaseId: 'hub-sample',
      dataDir: t.dataDir,
      source: { kind: 'pmc-cloud-dir', root: '/unused' },
      publish: { kind: 'hub', repoId: REPO, endpoint: t.hub.url },
    };
    const outcome = await startRelease(t.env.client, args);
    assert.equal(outcome.kind, 'started');
    const result = (await t.env.client.workflow.getHandle(outcome.workflowId).result()) as ReleaseResult;
    assert.equal(result.publish.target, `${t.hub.url}/datasets/${REPO}`);
    assert.equal(result.publish.uploaded, built.files.size + 1);
    assert.equal(result.publish.commits, 1);
    for (const [p, bytes] of built.files) assert.ok(t.hub.read(REPO, p)?.equals(bytes), p);

    const ev = events(outcome.workflowId);
    const child = ev.find(
      (e) => e.eventType === 'EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED',
    )?.startChildWorkflowExecutionInitiatedEventAttributes;
    assert.deepEqual([child?.workflowType.name, child?.workflowId], ['publishWorkflow', 'release-hub-sample/publish']);
    assert.ok(!ev.some((e) => e.activityTaskScheduledEventAttributes?.activityType.name === 'publishRelease'));
    const childEvents = events('release-hub-sample/publish');
    assert.deepEqual(
      childEvents
        .filter((e) => e.activityTaskScheduledEventAttributes)
        .map((e) => e.activityTaskScheduledEventAttributes!.activityType.name),
      ['planHubPublish', 'commitHubBatch'],
    );
    // RECORD_HUB_HISTORY=test/histories re-records the histories test/replay.test.ts replays (docs/publishing.md).
    const record = process.env.RECORD_HUB_HISTORY;
    if (record) {
      fs.writeFileSync(path.join(record, 'release-hub-sample.json'), t.historyJson(outcome.workflowId));
      fs.writeFileSync(path.join(record, 'publish-hub-sample.json'), t.historyJson('release-hub-sample/publish'));
    }
  });

  it('publish.kind local-folder (the embedded default) keeps the single publishRelease activity', async () => {
    const built = await buildSyntheticRelease(t.dataDir, 'rel-local');
    const outcome = await startRelease(t.env.client, {
      releaseId: 'rel-local',
      dataDir: t.dataDir,
      source: { kind: 'pmc-cloud-dir', root: '/unused' },
    });
    const result = (await t.env.client.workflow.getHandle(outcome.workflowId).result()) as ReleaseResult;
    assert.equal(result.publish.target, path.join(t.dataDir, 'releases', 'rel-local', 'hub'));
    assert.equal(result.publish.uploaded, built.files.size + 1);
    const ev = events(outcome.workflowId);
    assert.ok(ev.some((e) => e.activityTaskScheduledEventAttributes?.activityType.name === 'publishRelease'));
    assert.ok(!ev.some((e) => e.eventType === 'EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED'));
  });

  it('publishWorkflow continues as new every commitsPerRun commits, carrying the plan and the totals', async () => {
    const built = await buildSyntheticRelease(t.dataDir, 'can', { shards: { commercial: 2, other: 1 } });
    const release = ReleaseInputSchema.parse({
      releaseId: 'can',
      dataDir: t.dataDir,
      source: { kind: 'pmc-cloud-dir', root: '/unused' },
      publish: { kind: 'hub', repoId: 'biomedica/can', endpoint: t.hub.url, maxFilesPerCommit: 2 },
    });
    const handle = await t.env.client.workflow.start(publishWorkflow, {
      workflowId: 'publish-can',
      taskQueue: TASK_QUEUES.workflows,
      args: [{ release, commitsPerRun: 2 }],
    });
    const result = await handle.result();
    const commits = Math.ceil((built.files.size + 1) / 2);
    assert.deepEqual(
      { uploaded: result.uploaded, commits: result.commits, unchanged: result.unchanged },
      { uploaded: built.files.size + 1, commits, unchanged: 0 },
    );
    assert.equal(
      t.hub.stats.commits.filter((c) => c.repo === 'biomedica/can' && c.title.startsWith('can:')).length,
      commits,
    );
    const first = (JSON.parse(t.historyJson('publish-can', handle.firstExecutionRunId)) as { events: HistoryEvent[] })
      .events;
    assert.equal(first.at(-1)!.eventType, 'EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW');
    assert.equal(
      first.filter((e) => e.activityTaskScheduledEventAttributes?.activityType.name === 'commitHubBatch').length,
      2,
    );
    const progress = await handle.query(publishProgressQuery);
    assert.deepEqual([progress.phase, progress.nextBatch, progress.batches], ['done', commits, commits]);
    await Worker.runReplayHistory(
      { workflowBundle: t.bundle },
      JSON.parse(t.historyJson('publish-can', handle.firstExecutionRunId)) as never,
      'publish-can',
    );
  });

  it('the histories of both runs and of the publish child replay', async () => {
    for (const id of ['release-hub-sample', 'release-hub-sample/publish', 'release-rel-local']) {
      await Worker.runReplayHistory({ workflowBundle: t.bundle }, JSON.parse(t.historyJson(id)) as never, id);
    }
  });
});
