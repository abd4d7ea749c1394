import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { buildSyntheticRelease } from '../sample/hub-standin';
import { publishProgressQuery, publishWorkflow, type PublishProgress } from '../workflows/publish';
import { createHubTestEnv, type HubTestEnv, type WorkerProcess } from './support/hub-env';

const REPO = 'biomedica/wf-sample';

describe('publishWorkflow on a real Temporal dev server, activities in a worker process holding HF_TOKEN', function () {
  this.timeout(120_000);
  let t: HubTestEnv;
  let worker: WorkerProcess;
  let release: ReleaseInput;
  let files: Map<string, Buffer>;
  const runs: { workflowId: string; runId: string }[] = [];

  const start = async (workflowId: string, input: ReleaseInput = release) => {
    const handle = await t.env.client.workflow.start(publishWorkflow, {
      workflowId,
      taskQueue: TASK_QUEUES.workflows,
      args: [{ release: input }],
    });
    runs.push({ workflowId, runId: handle.firstExecutionRunId });
    return handle;
  };

  before(async () => {
    t = await createHubTestEnv();
    const built = await buildSyntheticRelease(t.dataDir, 'wf1', { shards: { commercial: 3, other: 2 } });
    files = built.files;
    release = ReleaseInputSchema.parse({
      releaseId: 'wf1',
      dataDir: t.dataDir,
      source: { kind: 'pmc-cloud-dir', root: '/unused' },
      publish: { kind: 'hub', repoId: REPO, endpoint: t.hub.url, maxFilesPerCommit: 3 },
    });
    assert.ok(!JSON.stringify(release).includes(t.token), 'the workflow input holds no token');
    // 2 commits per second on the hub queue, so the test does not wait on the production rate (100 per hour).
    worker = await t.startWorkerProcess({ HF_COMMITS_PER_HOUR: '7200' });
  });
  after(async () => {
    await worker?.stop();
    await t?.teardown();
  });

  it('a first publish uploads everything through 429s, 5xx and a commit whose answer is lost; progress is visible per commit', async () => {
    t.hub.inject(
      { route: 'preupload', status: 500, times: 2 },
      { route: 'lfs-batch', status: 429, retryAfterSeconds: 1 },
      { route: 'commit', delayMs: 1500 }, // first commit: slow, to look at progress while it runs
      { route: 'commit', drop: 'after' }, // second: applied, answer lost
      { route: 'commit', status: 429, retryAfterSeconds: 1, times: 5 }, // third: past the in-request budget, so the activity retries
    );
    const handle = await start('publish-wf1-a');
    // While the first commit waits on the stand-in: the query, the workflow's current details, the activity's heartbeat.
    let seen: { progress: PublishProgress; details: string; heartbeat: Record<string, unknown> } | null = null;
    for (let i = 0; i < 200 && !seen; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const progress = await handle.query(publishProgressQuery);
      if (progress.phase !== 'committing') continue;
      const d = await handle.describe();
      const pending = d.raw.pendingActivities?.find(
        (a) => a.activityType?.name === 'commitHubBatch' && a.heartbeatDetails?.payloads?.length,
      );
      if (!pending) continue;
      const details = (
        (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')) as { currentDetails: string }
      ).currentDetails;
      seen = {
        progress,
        details,
        heartbeat: defaultPayloadConverter.fromPayload(pending.heartbeatDetails!.payloads![0]!),
      };
    }
    assert.ok(seen, 'progress was visible while a commit ran');
    assert.equal(seen.progress.current?.batch, 0);
    assert.match(seen.details, /^commit 1 of \d+ to biomedica\/wf-sample: 3 files/);
    assert.equal(seen.heartbeat.step, 'commit 0');
    assert.equal(typeof seen.heartbeat.bytes, 'number');

    const result = await handle.result();
    const plan = await handle.query(publishProgressQuery);
    assert.equal(plan.phase, 'done');
    const batches = plan.batches;
    assert.equal(batches, Math.ceil((files.size + 1) / 3));
    assert.deepEqual(plan.done, {
      commits: batches - 1,
      skipped: 1,
      filesUploaded: files.size + 1 - 3,
      bytesUploaded: result.bytesUploaded,
      alreadyPresent: 3,
    });
    assert.equal(result.target, `${t.hub.url}/datasets/${REPO}`);
    assert.equal(result.files, files.size + 1);
    // The repo is complete, byte for byte, and each path was committed exactly once (the lost answer was not re-committed).
    for (const [p, bytes] of files) assert.ok(t.hub.read(REPO, p)?.equals(bytes), p);
    assert.match(t.hub.read(REPO, 'README.md')!.toString('utf8'), /^---\nlicense: other\n/);
    const commits = t.hub.stats.commits.filter((c) => c.repo === REPO && c.title.startsWith('wf1:'));
    assert.equal(commits.length, batches);
    const added = commits.flatMap((c) => c.added.map((a) => a.path));
    assert.equal(added.length, new Set(added).size, 'no path committed twice');
    assert.equal(t.hub.stats.faultsServed, 10);
    assert.match(worker.logs(), /Hub request retried/);
    assert.match(worker.logs(), /Hub commit skipped: batch already in the repo/);
  });

  it('a second publish uploads zero files and makes no commit', async () => {
    const before = {
      commits: t.hub.stats.commits.length,
      lfs: t.hub.stats.lfsUploads,
      requests: t.hub.stats.requests.length,
    };
    const result = await (await start('publish-wf1-b')).result();
    assert.deepEqual(
      { uploaded: result.uploaded, commits: result.commits, unchanged: result.unchanged },
      { uploaded: 0, commits: 0, unchanged: files.size + 1 },
    );
    assert.equal(t.hub.stats.commits.length, before.commits);
    assert.equal(t.hub.stats.lfsUploads, before.lfs);
    const routes = new Set(t.hub.stats.requests.slice(before.requests).map((r) => r.route));
    assert.deepEqual([...routes].sort(), ['revision', 'tree'], 'only the head and the tree are read');
  });

  it('a refused token fails the publish for good, with the echoed header scrubbed from the failure', async () => {
    t.hub.inject({ route: 'revision', status: 403, echoAuthorization: true });
    const handle = await start('publish-wf1-denied');
    const err = await handle.result().then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError);
    const cause = (err.cause as { cause?: { type?: string; message?: string } }).cause;
    assert.equal(cause?.type, 'HubAuth');
    assert.match(cause?.message ?? '', /Hub answered 403: .*\[redacted\]/);
    const attempts = t.hub.stats.requests.filter((r) => r.status === 403).length;
    assert.equal(attempts, 1, 'not retried');
  });

  it("the token never appears in any history or in the workers' logs", async () => {
    const histories = runs.map((r) => t.historyJson(r.workflowId, r.runId));
    const logs = `${worker.logs()}\n${t.localLogs.join('\n')}`;
    if (process.env.HUB_TEST_SHOW_LOGS) console.log(logs); // to read what the workers logged
    const secretParts = [t.token, t.token.slice(3), `Bearer ${t.token}`];
    for (const [i, h] of histories.entries()) {
      assert.ok(h.length > 1000 && h.includes('"events"'), `history ${runs[i]!.workflowId} fetched`);
      for (const s of secretParts) assert.ok(!h.includes(s), `history of ${runs[i]!.workflowId} holds the token`);
      // Payloads are base64 in the JSON history: check the decoded ones too.
      const decoded = [...h.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)]
        .map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'))
        .join('\n');
      for (const s of secretParts)
        assert.ok(!decoded.includes(s), `a payload of ${runs[i]!.workflowId} holds the token`);
    }
    const denied = histories[runs.findIndex((r) => r.workflowId === 'publish-wf1-denied')]!;
    assert.match(denied, /\[redacted\]/, 'the echoed header reached the history only scrubbed');
    assert.ok(logs.length > 0 && /Hub step failed/.test(logs), 'the worker logged the failures');
    for (const s of secretParts) assert.ok(!logs.includes(s), 'a log line holds the token');
    assert.ok(!/hf_[A-Za-z0-9]{6,}/.test(logs.replace(/hf_\[redacted\]/g, '')), 'nothing token-shaped in the logs');
  });

  it('replays every publish history of this run (determinism)', async () => {
    for (const r of runs) {
      const history = JSON.parse(t.historyJson(r.workflowId, r.runId)) as unknown;
      await Worker.runReplayHistory({ workflowBundle: t.bundle }, history as never, r.workflowId);
    }
    assert.ok(path.isAbsolute(t.dataDir));
  });
});
