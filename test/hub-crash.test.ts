import * as assert from 'node:assert/strict';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { buildSyntheticRelease } from '../sample/hub-standin';
import { publishProgressQuery, publishWorkflow } from '../workflows/publish';
import { createHubTestEnv, type HubTestEnv, type WorkerProcess } from './support/hub-env';

const REPO = 'biomedica/crash-sample';

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('publishWorkflow: the worker process dies in the middle of a commit, then the publish is run again', function () {
  this.timeout(120_000);
  let t: HubTestEnv;
  let worker: WorkerProcess;
  let release: ReleaseInput;
  let files: Map<string, Buffer>;
  const commitsPerHour = 7200; // 2 per second on the hub queue

  before(async () => {
    t = await createHubTestEnv();
    files = (await buildSyntheticRelease(t.dataDir, 'wf2', { shards: { commercial: 4, other: 2 } })).files;
    release = ReleaseInputSchema.parse({
      releaseId: 'wf2',
      dataDir: t.dataDir,
      source: { kind: 'pmc-cloud-dir', root: '/unused' },
      publish: { kind: 'hub', repoId: REPO, endpoint: t.hub.url, maxFilesPerCommit: 2 },
    });
    worker = await t.startWorkerProcess({ HF_COMMITS_PER_HOUR: String(commitsPerHour) }, { hubOnly: true });
  });
  after(async () => {
    await worker?.stop();
    await t?.teardown();
  });

  it("ends with the complete repo, no content committed twice, and commits spaced by the hub queue's rate", async () => {
    // The first commit reaches the Hub, which takes 2.5 s to apply it; the worker process is killed meanwhile.
    t.hub.inject({ route: 'commit', delayMs: 2500, drop: 'after' });
    const a = await t.env.client.workflow.start(publishWorkflow, {
      workflowId: 'publish-wf2-a',
      taskQueue: TASK_QUEUES.workflows,
      args: [{ release }],
    });
    await until('the first commit to reach the stand-in', () => t.hub.stats.requests.some((r) => r.route === 'commit'));
    await worker.kill();
    const mine = () => t.hub.stats.commits.filter((c) => c.repo === REPO && c.title.startsWith('wf2:'));
    await until('the stand-in to apply the commit of the dead worker', () => mine().length === 1);
    const firstCommit = mine()[0]!;
    assert.equal(firstCommit.added.length, 2);
    // The dead worker's activity would only be retried after its heartbeat timeout; the operator reruns the publish.
    await a.terminate('worker machine lost');

    worker = await t.startWorkerProcess({ HF_COMMITS_PER_HOUR: String(commitsPerHour) }, { hubOnly: true });
    const b = await t.env.client.workflow.start(publishWorkflow, {
      workflowId: 'publish-wf2-b',
      taskQueue: TASK_QUEUES.workflows,
      args: [{ release }],
    });
    const result = await b.result();
    const progress = await b.query(publishProgressQuery);
    assert.equal(progress.unchanged, 2, "the rerun's plan found the dead worker's commit in the repo");
    assert.equal(progress.filesToUpload, files.size + 1 - 2);
    assert.equal(result.uploaded, files.size + 1 - 2);
    assert.equal(result.commits, Math.ceil((files.size + 1 - 2) / 2));

    for (const [p, bytes] of files) assert.ok(t.hub.read(REPO, p)?.equals(bytes), p);
    assert.ok(t.hub.read(REPO, 'README.md'));
    const added = mine().flatMap((c) => c.added.map((x) => `${x.path}@${x.sha256}`));
    assert.equal(added.length, files.size + 1, 'every file committed once');
    assert.equal(new Set(added).size, added.length, 'no content committed twice');

    // The hub queue dispatches at most 2 commit activities per second: a token bucket (burst about 4 here), so n
    // commits of the rerun span at least (n - burst) / rate seconds, however loaded the machine is.
    const times = mine()
      .slice(1)
      .map((c) => c.t);
    const span = times.at(-1)! - times[0]!;
    const rate = commitsPerHour / 3600;
    assert.ok(times.length >= 8);
    assert.ok(
      span >= ((times.length - 4) / rate) * 1000 * 0.9,
      `${times.length} commits in ${span} ms; gaps ${times
        .slice(1)
        .map((x, i) => x - times[i]!)
        .join(', ')} ms`,
    );
  });
});
