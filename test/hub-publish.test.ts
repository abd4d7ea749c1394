import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { commit } from '@huggingface/hub';
import { ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { publishRelease } from '../activities/publish/activity';
import { contentIdsOfFile, gitBlobSha1Of } from '../activities/publish/hashes';
import { commitPlannedBatch, planHub, readHubPlan, type HubSession } from '../activities/publish/hub';
import { hubToken, hubCommitRatePerSecond, readHubWorkerEnv } from '../activities/publish/hub-env';
import {
  classifyHubError,
  hubFetch,
  redact,
  retryAfterMs,
  NON_RETRYABLE_HUB_ERRORS,
} from '../activities/publish/hub-http';
import { checkRepoLimits, cutBatches, type PlannedFile } from '../activities/publish/hub-plan';
import { HUB_NON_RETRYABLE } from '../workflows/publish';
import { buildSyntheticRelease, startHubStandin, type HubStandin } from '../sample/hub-standin';

const TOKEN = `hf_${'TestToken'.repeat(4)}x`;
const REPO = 'biomedica/pmc-figures';

function releaseInput(
  dataDir: string,
  releaseId: string,
  endpoint: string,
  over: Record<string, unknown> = {},
): ReleaseInput {
  return ReleaseInputSchema.parse({
    releaseId,
    dataDir,
    source: { kind: 'pmc-cloud-dir', root: '/unused' },
    publish: { kind: 'hub', repoId: REPO, endpoint, maxFilesPerCommit: 4, maxBytesPerCommit: 150_000, ...over },
  });
}

async function publishAll(
  release: ReleaseInput,
  s: HubSession,
): Promise<{ planId: string; batches: number; commits: number }> {
  const plan = await planHub(release, s);
  let commits = 0;
  for (let i = 0; i < plan.batches.length; i++)
    if ((await commitPlannedBatch(release, plan.planId, i, s)).committed) commits++;
  return { planId: plan.planId, batches: plan.batches.length, commits };
}

/** Runs `fn` until it stops failing with a retryable Hub error, as the activity's retry policy would. */
async function withRetries<T>(fn: () => Promise<T>, max = 5): Promise<{ value: T; failures: string[] }> {
  const failures: string[] = [];
  for (;;) {
    try {
      return { value: await fn(), failures };
    } catch (err) {
      const c = classifyHubError(err, [TOKEN]);
      failures.push(c.type);
      if (!c.retryable || failures.length >= max) throw err;
    }
  }
}

describe('Hub publishing against the loopback stand-in (no Temporal)', function () {
  this.timeout(60_000);
  let dataDir: string;
  let hub: HubStandin;
  let session: HubSession;
  const files = new Map<string, Buffer>();

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-hub-'));
    // Small pages and a low multipart threshold, so tree paging and multipart uploads are exercised.
    hub = await startHubStandin({
      tokens: [TOKEN],
      treePageSize: 3,
      multipartThreshold: 50_000,
      multipartChunkSize: 16_384,
    });
    const built = await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 } });
    for (const [k, v] of built.files) files.set(k, v);
    session = { token: TOKEN, endpoint: hub.url, repoId: REPO, http: hubFetch({ baseDelayMs: 20 }) };
  });
  after(async () => {
    await hub?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('plans commits within the file and byte bounds, data first and the card last', async () => {
    const release = releaseInput(dataDir, 'r1', hub.url);
    const summary = await planHub(release, session);
    assert.equal(summary.createdRepo, true, 'the repo is created when missing');
    assert.equal(summary.files, files.size + 1);
    assert.equal(summary.unchanged, 0);
    const plan = await readHubPlan(release, summary.planId);
    const order = plan.batches.flatMap((b) => b.files.map((f) => f.repoPath));
    assert.deepEqual(new Set(order), new Set([...files.keys(), 'README.md']));
    assert.equal(order.at(-1), 'README.md');
    assert.ok(order.indexOf('metadata/summary.json') > order.indexOf('other/000001.tar'), 'metadata after the shards');
    for (const b of plan.batches) {
      assert.ok(b.files.length <= 4, `batch ${b.index}: ${b.files.length} files`);
      assert.ok(b.bytes <= 150_000 || b.files.length === 1, `batch ${b.index}: ${b.bytes} bytes`);
      assert.equal(
        b.bytes,
        b.files.reduce((n, f) => n + f.bytes, 0),
      );
    }
    assert.deepEqual(
      summary.batches,
      plan.batches.map((b) => ({ files: b.files.length, bytes: b.bytes })),
    );
    assert.equal(
      hub.stats.commits.filter((c) => c.repo === REPO).length,
      1,
      'planning commits nothing (the repo has its initial commit only)',
    );
  });

  it('a first publish uploads everything: LFS for shards and parquet, regular files for json and the card', async () => {
    const release = releaseInput(dataDir, 'r1', hub.url);
    const r = await publishAll(release, session);
    assert.equal(r.commits, r.batches);
    const remote = hub.files(REPO)!;
    for (const [p, bytes] of files) {
      assert.ok(hub.read(REPO, p)?.equals(bytes), `${p} has the release's bytes`);
      assert.equal(remote.get(p)!.lfs, /\.(tar|parquet)$/.test(p), `${p} LFS`);
    }
    const card = hub.read(REPO, 'README.md')!.toString('utf8');
    assert.equal(card, fs.readFileSync(path.join(dataDir, 'releases', 'r1', 'publish', 'README.md'), 'utf8'));
    assert.match(card, /^---\nlicense: other\n/);
    assert.equal(hub.stats.lfsUploads, 12, 'one upload per shard and parquet file');
    assert.ok(
      hub.stats.multipartUploads >= 1 && hub.stats.multipartUploads < 12,
      'large objects went multipart, small ones basic',
    );
    const commits = hub.stats.commits.filter((c) => c.repo === REPO && c.title.startsWith('r1:'));
    const added = commits.flatMap((c) => c.added.map((a) => a.path));
    assert.equal(added.length, new Set(added).size, 'no path committed twice');
  });

  it('a second publish uploads zero files and makes no commit', async () => {
    const release = releaseInput(dataDir, 'r1', hub.url);
    const before = {
      commits: hub.stats.commits.length,
      lfs: hub.stats.lfsUploads,
      requests: hub.stats.requests.length,
    };
    const plan = await planHub(release, session);
    assert.equal(plan.toUpload, 0);
    assert.equal(plan.unchanged, files.size + 1);
    assert.deepEqual(plan.batches, []);
    assert.equal(hub.stats.commits.length, before.commits);
    assert.equal(hub.stats.lfsUploads, before.lfs);
    const routes = hub.stats.requests.slice(before.requests).map((q) => q.route);
    assert.ok(
      !routes.includes('preupload') && !routes.includes('lfs-batch') && !routes.includes('commit'),
      routes.join(','),
    );
  });

  it('a rebuilt shard and a changed small file are the only uploads (sha256 against lfs.oid, git blob id against oid)', async () => {
    await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 }, bump: 'commercial/000002.tar' });
    const sizes = path.join(dataDir, 'releases', 'r1', 'webdataset', 'other', 'sizes.json');
    fs.writeFileSync(sizes, fs.readFileSync(sizes, 'utf8').replace('}', '  , "note": 1 }'));
    const release = releaseInput(dataDir, 'r1', hub.url);
    const plan = await planHub(release, session);
    const planned = (await readHubPlan(release, plan.planId)).batches
      .flatMap((b) => b.files.map((f) => f.repoPath))
      .sort();
    assert.deepEqual(planned, ['commercial/000002.tar', 'other/sizes.json']);
    await commitPlannedBatch(release, plan.planId, 0, session);
    assert.ok(
      hub
        .read(REPO, 'commercial/000002.tar')!
        .equals(fs.readFileSync(path.join(dataDir, 'releases', 'r1', 'webdataset', 'commercial', '000002.tar'))),
    );
    assert.equal(hub.read(REPO, 'other/sizes.json')!.toString('utf8'), fs.readFileSync(sizes, 'utf8'));
  });

  it('a commit the Hub applied but whose answer was lost is not committed again on retry', async () => {
    await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 }, seed: 'lost-answer' });
    const release = releaseInput(dataDir, 'r1', hub.url);
    const plan = await planHub(release, session);
    assert.ok(plan.batches.length >= 2);
    hub.inject({ route: 'commit', drop: 'after' });
    const commitsBefore = hub.stats.commits.length;
    const first = await withRetries(() => commitPlannedBatch(release, plan.planId, 0, session));
    assert.deepEqual(first.failures, ['HubNetwork'], 'the dropped answer fails the attempt');
    assert.equal(first.value.committed, false, 'the retry finds the batch in the repo');
    assert.equal(first.value.alreadyPresent, plan.batches[0]!.files);
    assert.equal(hub.stats.commits.length, commitsBefore + 1, 'exactly one commit for the batch');
    // A connection dropped before the Hub handled the commit: the retry commits.
    hub.inject({ route: 'commit', drop: 'before' });
    const second = await withRetries(() => commitPlannedBatch(release, plan.planId, 1, session));
    assert.deepEqual(second.failures, ['HubNetwork']);
    assert.equal(second.value.committed, true);
    for (let i = 2; i < plan.batches.length; i++) await commitPlannedBatch(release, plan.planId, i, session);
    const again = await planHub(release, session);
    assert.equal(again.toUpload, 0, 'the repo is complete');
    const added = hub.stats.commits.slice(commitsBefore).flatMap((c) => c.added.map((a) => `${a.path}@${a.sha256}`));
    assert.equal(added.length, new Set(added).size, 'no content committed twice');
  });

  it('parentCommit: a concurrent writer between the re-check and the commit makes it fail with 412, and the retry keeps both', async () => {
    await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 }, seed: 'concurrent' });
    const release = releaseInput(dataDir, 'r1', hub.url);
    const plan = await planHub(release, session);
    hub.inject({ route: 'preupload', delayMs: 600 });
    setTimeout(() => hub.commitFile(REPO, 'notes/other-writer.md', 'written by someone else\n'), 200);
    const r = await withRetries(() => commitPlannedBatch(release, plan.planId, 0, session));
    assert.deepEqual(r.failures, ['HubConflict']);
    assert.equal(r.value.committed, true);
    assert.equal(
      hub.read(REPO, 'notes/other-writer.md')?.toString('utf8'),
      'written by someone else\n',
      "the other writer's commit is kept",
    );
    const conflict = hub.stats.requests.filter((q) => q.route === 'commit' && q.status === 412);
    assert.equal(conflict.length, 1);
  });

  it('survives 429s and 5xx on every kind of call, honouring Retry-After', async () => {
    await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 }, seed: 'faults' });
    const release = releaseInput(dataDir, 'r1', hub.url);
    const served = hub.stats.faultsServed;
    hub.inject(
      { route: 'revision', status: 500 },
      { route: 'tree', status: 429, retryAfterSeconds: 1 },
      { route: 'paths-info', status: 502 },
      { route: 'preupload', status: 429, retryAfterSeconds: 1, times: 2 },
      { route: 'lfs-batch', status: 500 },
      { route: 'lfs-upload', status: 503 },
      { route: 'commit', status: 500 },
      { route: 'commit', status: 429, retryAfterSeconds: 1 },
    );
    const http = hubFetch({ baseDelayMs: 20 });
    const started = Date.now();
    const r = await publishAll(release, { ...session, http });
    assert.ok(r.commits > 0);
    assert.equal(hub.stats.faultsServed - served, 9, 'every injected fault was met');
    assert.equal(http.retries, 9);
    assert.ok(
      Date.now() - started >= 3_000,
      'the three 1-second Retry-Afters (tree, preupload x2) and a commit one were waited',
    );
    assert.equal((await planHub(release, session)).toUpload, 0);
  });

  it("a 429 longer than the in-request budget fails the attempt with the Hub's wait as the next retry delay", async () => {
    await buildSyntheticRelease(dataDir, 'r1', { shards: { commercial: 4, other: 2 }, seed: 'long-429' });
    const release = releaseInput(dataDir, 'r1', hub.url);
    const plan = await planHub(release, session);
    hub.inject({ route: 'commit', status: 429, retryAfterSeconds: 120 });
    const http = hubFetch({ baseDelayMs: 20 });
    const err = await commitPlannedBatch(release, plan.planId, 0, { ...session, http }).then(
      () => null,
      (e: unknown) => e,
    );
    const c = classifyHubError(err, [TOKEN], http.lastRetryAfterMs);
    assert.equal(c.type, 'HubRateLimited');
    assert.equal(c.retryable, true);
    assert.equal(c.retryAfterMs, 120_000);
    assert.equal(http.retries, 0, 'a 2-minute wait is not spent holding the activity');
    assert.equal((await commitPlannedBatch(release, plan.planId, 0, session)).committed, true);
  });

  it('a refused token fails for good, and an echoed Authorization header never reaches the error text', async () => {
    const release = releaseInput(dataDir, 'r1', hub.url);
    hub.inject({ route: 'revision', status: 403, echoAuthorization: true });
    const err = await planHub(release, session).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(String((err as Error).message).includes(TOKEN), 'the stand-in did echo the token');
    const c = classifyHubError(err, [TOKEN]);
    assert.equal(c.type, 'HubAuth');
    assert.equal(c.retryable, false);
    assert.ok(!c.message.includes(TOKEN) && !c.message.includes(TOKEN.slice(3)), c.message);
    assert.match(c.message, /\[redacted\]/);
    const wrong = await planHub(release, { ...session, token: 'hf_wrongwrongwrongwrong' }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.equal(classifyHubError(wrong, ['hf_wrongwrongwrongwrong']).type, 'HubAuth');
    assert.equal(
      redact('see https://h/x?X-Amz-Signature=abc&t=1 and hf_abcdefghijkl', []),
      'see https://h/x?[query removed] and hf_[redacted]',
    );
  });

  it("the stand-in refuses a README.md whose metadata breaks the Hub's rules (400, not retried)", async () => {
    const bad = '---\nlicense: cc-by-99\ntask_categories:\n- image-captioning\n---\n# x\n';
    const err = await commit({
      repo: { type: 'dataset', name: REPO },
      operations: [{ operation: 'addOrUpdate', path: 'README.md', content: new Blob([bad]) }],
      title: 'bad card',
      accessToken: TOKEN,
      hubUrl: hub.url,
      useXet: false,
    }).then(
      () => null,
      (e: unknown) => e,
    );
    const c = classifyHubError(err, [TOKEN]);
    assert.equal(c.type, 'HubRejected');
    assert.equal(c.retryable, false);
    assert.match(c.message, /license "cc-by-99" is not one of the Hub's license ids/);
    assert.match(c.message, /task_categories "image-captioning"/);
  });

  it("refuses a layout over the Hub's limits before uploading anything", () => {
    const many = Array.from({ length: 10_001 }, (_, i) => `commercial/${String(i).padStart(6, '0')}.tar`);
    assert.deepEqual(checkRepoLimits(many), ['10001 entries in commercial/ (the Hub allows 10000 per folder)']);
    assert.deepEqual(checkRepoLimits(many.slice(0, 10_000)), []);
    const spread = Array.from({ length: 100_001 }, (_, i) => `d${Math.floor(i / 5000)}/${i}.tar`);
    assert.deepEqual(checkRepoLimits(spread), ['100001 files in the repo (the Hub allows 100000)']);
  });

  it('cuts batches greedily; a file above the byte bound goes alone', () => {
    const f = (p: string, bytes: number): PlannedFile => ({ repoPath: p, source: p, bytes });
    const b = cutBatches([f('a', 10), f('b', 10), f('big', 500), f('c', 10), f('d', 10), f('e', 10)], {
      maxFilesPerCommit: 2,
      maxBytesPerCommit: 100,
    });
    assert.deepEqual(
      b.map((x) => x.files.map((y) => y.repoPath)),
      [['a', 'b'], ['big'], ['c', 'd'], ['e']],
    );
  });

  it('hashes files as the Hub identifies them: sha256 (LFS oid) and the git blob id', async () => {
    assert.equal(gitBlobSha1Of(''), 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391');
    assert.equal(gitBlobSha1Of('hello world\n'), '3b18e512dba79e4c8300dd08aeb37f8e728b8dad');
    const file = path.join(dataDir, 'hello.txt');
    fs.writeFileSync(file, 'hello world\n');
    assert.deepEqual(await contentIdsOfFile(file), {
      bytes: 12,
      sha256: 'a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447',
      gitBlobSha1: '3b18e512dba79e4c8300dd08aeb37f8e728b8dad',
    });
  });

  it('reads the token and the commit rate from the worker environment only', () => {
    assert.throws(
      () => hubToken({}),
      (e: Error) => /HF_TOKEN is not set/.test(e.message),
    );
    assert.equal(hubToken({ HF_TOKEN: TOKEN }), TOKEN);
    assert.equal(hubCommitRatePerSecond(readHubWorkerEnv({})), 100 / 3600);
    assert.equal(hubCommitRatePerSecond(readHubWorkerEnv({ HF_COMMITS_PER_HOUR: '7200' })), 2);
    assert.equal(retryAfterMs(new Headers({ 'retry-after': '3' })), 3000);
    assert.equal(retryAfterMs(new Headers({ ratelimit: '"api";r=0;t=42' })), 42_000);
    assert.equal(retryAfterMs(new Headers({})), null);
    assert.deepEqual(
      [...HUB_NON_RETRYABLE].sort(),
      [...NON_RETRYABLE_HUB_ERRORS].sort(),
      "the workflow's non-retryable list matches the classifier's",
    );
    const parsed = ReleaseInputSchema.parse({
      releaseId: 'x',
      dataDir: '/d',
      source: { kind: 'pmc-cloud-dir', root: '/r' },
      publish: { kind: 'hub', repoId: 'a/b' },
    });
    assert.deepEqual(parsed.publish, {
      kind: 'hub',
      repoId: 'a/b',
      endpoint: 'https://huggingface.co',
      private: true,
      maxFilesPerCommit: 50,
      maxBytesPerCommit: 50_000_000_000,
    });
    assert.equal(JSON.stringify(parsed).includes('hf_'), false);
    const dflt = ReleaseInputSchema.parse({
      releaseId: 'x',
      dataDir: '/d',
      source: { kind: 'pmc-cloud-dir', root: '/r' },
    });
    assert.deepEqual(dflt.publish, { kind: 'local-folder', path: 'hub', repoId: 'local/biomedica-sample' });
  });

  it('local-folder publishing (the embedded default) still lays out the same files and rewrites nothing on a rerun', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-local-'));
    try {
      const built = await buildSyntheticRelease(dir, 'loc');
      const release = ReleaseInputSchema.parse({
        releaseId: 'loc',
        dataDir: dir,
        source: { kind: 'pmc-cloud-dir', root: '/r' },
      });
      const first = await publishRelease(release);
      assert.equal(first.files, built.files.size + 1);
      assert.equal(first.uploaded, first.files);
      for (const [p, bytes] of built.files) assert.ok(fs.readFileSync(path.join(first.target, p)).equals(bytes), p);
      assert.match(fs.readFileSync(path.join(first.target, 'README.md'), 'utf8'), /^---\nlicense: other\n/);
      const second = await publishRelease(release);
      assert.deepEqual([second.uploaded, second.unchanged], [0, second.files]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
