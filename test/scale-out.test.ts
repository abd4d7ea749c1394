/**
 * Pools on separate hosts: the sample release on the production Temporal server (built from its Go module, with
 * PostgreSQL 15), each pool (io, entrez, cpu, gpu, workflows) a process of its own with its own work dir and no
 * folder shared with any other, handing every input and output through an S3-compatible server on loopback (moto's
 * server mode, with SigV4 and IAM checks). The published tree in the bucket is byte-identical to the embedded
 * default's run of the same sample; so it is when the cpu pool is SIGKILLed mid-unit and replaced by a process on
 * a fresh, empty work dir (a new host).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { isPartialName, sha256File } from '../activities/common/files';
import { closeStores, openStore, type ObjectStore } from '../activities/common/store';
import { loadEnv } from '../config/env';
import { projectRoot } from '../config/paths';
import { ReleaseInputSchema, releaseWorkflowId, TASK_QUEUES } from '../config/release';
import { fitTaxonomyWorkflowId, type FitTaxonomyResult } from '../workflows/taxonomy';
import { releaseStatus, startRelease } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import { startOrAttachExport } from '../cli/export';
import { exportSubset, type ExportInput } from '../activities/export/export';
import { WorkerProcess } from './support/processes';
import { createReleaseTestEnv, type ReleaseTestEnv } from './support/release-env';
import { startS3Standin, type S3Standin } from './support/s3-standin';

const script = path.join(projectRoot, 'scripts', 'temporal-cluster.sh');
const PUBLISHED = ['webdataset', 'parquet', 'report', 'hub'];
const POOL_PROCESSES = ['io', 'entrez', 'cpu', 'gpu', 'workflows'] as const;

/** sha256 of every published file of a release folder (shards, parquet, indexes, report, the hub layout). */
async function localDigests(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const dir of PUBLISHED) {
    for (const e of fs.readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })) {
      if (!e.isFile() || isPartialName(e.name)) continue;
      const file = path.join(e.parentPath, e.name);
      out[path.relative(root, file).split(path.sep).join('/')] = await sha256File(file);
    }
  }
  return out;
}

/** The same, of a release in the store: every object under its published folders, downloaded and hashed. */
async function storeDigests(store: ObjectStore, releaseId: string, scratch: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const base = `releases/${releaseId}/`;
  for (const dir of PUBLISHED) {
    for (const o of await store.list(`${base}${dir}/`)) {
      const file = path.join(scratch, ...o.key.split('/'));
      assert.equal(await store.download(o.key, file), true);
      out[o.key.slice(base.length)] = await sha256File(file);
    }
  }
  return out;
}

describe('scale-out: each pool on its own host, outputs in object storage, on the production server', function () {
  this.timeout(1_500_000);
  let t: ReleaseTestEnv;
  let s3: S3Standin;
  let clusterDir: string;
  let address: string;
  let client: Client;
  let tmp: string;
  let store: ObjectStore;
  const baselines: Record<string, Record<string, string>> = {};
  let workers: WorkerProcess[] = [];

  const poolEnv = (workDir: string): NodeJS.ProcessEnv => ({
    TEMPORAL_ADDRESS: address,
    TEMPORAL_NAMESPACE: 'default',
    NCBI_EUTILS_URL: t.eutils.baseUrl,
    NCBI_EMAIL: 'tests@localhost',
    BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'false',
    BIOMEDICA_WORK_DIR: workDir,
    // Nothing of the embedded default's data dir: a pool that looked there would find it empty.
    BIOMEDICA_DATA_DIR: path.join(workDir, 'no-data-dir'),
    ...s3.env(),
  });

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-scale-'));
    // The embedded default's runs of the same sample: every pool in this process, one data dir, the dev server.
    t = await createReleaseTestEnv();
    await t.startWorkers();
    for (const [id, window] of [
      ['scale', 4],
      ['scale-kill', 1],
    ] as const) {
      const started = await startRelease(t.env.client, {
        ...sampleReleaseInput(t.dataDir, t.mirror.baseUrl, id),
        window,
      });
      await t.env.client.workflow.getHandle(started.workflowId).result();
      baselines[id] = await localDigests(path.join(t.dataDir, 'releases', id));
    }
    await t.stopWorkers();
    clusterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-cluster-'));
    const port = 21000 + 1000 * Math.floor(Math.random() * 8) + 311;
    const out = execFileSync('bash', [script, 'start', clusterDir, String(port)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 600_000,
    });
    address = out.trim().split('\n').pop()!;
    client = new Client({ connection: await Connection.connect({ address }), namespace: 'default' });
    s3 = await startS3Standin();
    await s3.createBucket('biomedica');
    store = openStore('s3://biomedica/', loadEnv(s3.env()));
  });
  after(async () => {
    for (const w of workers) await w.kill();
    await client?.connection.close();
    await t?.teardown();
    await s3?.close();
    closeStores();
    if (clusterDir) execFileSync('bash', [script, 'stop', clusterDir], { stdio: 'ignore' });
    for (const d of [clusterDir, tmp]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const w of workers) await w.kill();
    workers = [];
  });

  async function startPools(tag: string): Promise<Map<string, { worker: WorkerProcess; dir: string }>> {
    const pools = new Map<string, { worker: WorkerProcess; dir: string }>();
    for (const pool of POOL_PROCESSES) {
      const dir = path.join(tmp, `${tag}-${pool}-host`);
      fs.mkdirSync(dir, { recursive: true });
      const worker = new WorkerProcess(poolEnv(dir), pool);
      await worker.start();
      workers.push(worker);
      pools.set(pool, { worker, dir });
    }
    return pools;
  }

  it('runs the sample with every pool in its own process and folder, byte-identical to the embedded default', async () => {
    const pools = await startPools('one');
    const cliHost = path.join(tmp, 'cli-host');
    const started = await startRelease(client, {
      ...sampleReleaseInput(cliHost, t.mirror.baseUrl, 'scale'),
      store: 's3://biomedica/',
    });
    assert.equal(started.kind, 'started');
    await client.workflow.getHandle(started.workflowId).result();
    const got = await storeDigests(store, 'scale', path.join(tmp, 'fetched-one'));
    assert.ok(
      Object.keys(got).some((k) => k.startsWith('hub/')) && Object.keys(got).length >= 20,
      Object.keys(got).join(),
    );
    assert.deepEqual(got, baselines.scale);
    // The model and the taxonomy travelled through the store too; no host read another's folder (none is shared).
    assert.ok(await store.head('models/tiny-vit-seed1.onnx'));
    assert.ok(await store.head('models/taxonomy-bootstrap-v0.json'));
    assert.equal(fs.existsSync(cliHost), false, 'the release never wrote to the dataDir of the host that started it');
    assert.deepEqual(fs.readdirSync(pools.get('workflows')!.dir), [], 'the workflows pool writes nothing');
    const shardsOn = (pool: string) =>
      fs
        .readdirSync(pools.get(pool)!.dir, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.tar'));
    // The io host published without holding a shard (copies in the store), the gpu host never saw one, and the
    // cpu host let each go once committed: no host's disk holds the release.
    for (const pool of POOL_PROCESSES) assert.deepEqual(shardsOn(pool), [], `${pool} host`);
    const mediaOn = (pool: string) =>
      fs
        .readdirSync(pools.get(pool)!.dir, { recursive: true })
        .map(String)
        .filter((f) => f.includes(`${path.sep}media${path.sep}`) && f.endsWith('.jpg'));
    assert.deepEqual(mediaOn('cpu'), [], 'the cpu host let the figure files go once its stages committed');
    // The store's credentials are the workers' own: never in the release's history.
    const history = JSON.stringify(await client.workflow.getHandle(releaseWorkflowId('scale')).fetchHistory());
    assert.equal(history.includes(s3.writer.secretAccessKey), false);
    assert.equal(history.includes(s3.writer.accessKeyId), false);
  });

  it('stays byte-identical when the cpu pool is SIGKILLed mid-unit and replaced on a fresh host', async () => {
    const pools = await startPools('kill');
    const started = await startRelease(client, {
      ...sampleReleaseInput(path.join(tmp, 'cli-host'), t.mirror.baseUrl, 'scale-kill'),
      window: 1,
      store: 's3://biomedica/',
    });
    const handle = client.workflow.getHandle(started.workflowId);
    // Killed once the first unit has committed its parse and before the last unit has its parquet file.
    const deadline = Date.now() + 600_000;
    let committed: string[];
    for (;;) {
      committed = (await store.list('releases/scale-kill/units/')).map((o) => o.key);
      if (committed.some((k) => k.endsWith('/manifests/parse.json'))) break;
      assert.ok(Date.now() < deadline, 'no unit reached parse');
      await new Promise((r) => setTimeout(r, 250));
    }
    const cpu = pools.get('cpu')!;
    await cpu.worker.kill('SIGKILL');
    const parquetDone = committed.filter((k) => k.endsWith('/manifests/parquet.json')).length;
    assert.ok(parquetDone < 3, `killed mid-release (${parquetDone} units done)`);
    const replacement = new WorkerProcess(poolEnv(path.join(tmp, 'kill-cpu-replacement-host')), 'cpu');
    fs.mkdirSync(path.join(tmp, 'kill-cpu-replacement-host'), { recursive: true });
    await replacement.start();
    workers.push(replacement);
    await handle.result();
    assert.deepEqual(await storeDigests(store, 'scale-kill', path.join(tmp, 'fetched-kill')), baselines['scale-kill']);
    assert.deepEqual(
      (await store.list('releases/scale-kill/')).filter((o) => isPartialName(path.posix.basename(o.key))),
      [],
      'no temporary object in the store',
    );
  });

  it('fails a release on a missing bucket at once, with one line naming the bucket, the endpoint and what to fix', async () => {
    await startPools('bad');
    const started = await startRelease(client, {
      ...sampleReleaseInput(path.join(tmp, 'cli-host'), t.mirror.baseUrl, 'scale-nobucket'),
      store: 's3://no-such-bucket/2027',
    });
    const t0 = Date.now();
    await assert.rejects(client.workflow.getHandle(started.workflowId).result());
    assert.ok(Date.now() - t0 < 120_000, 'not retried for hours');
    const status = await releaseStatus(client, 'scale-nobucket');
    assert.equal(status?.status, 'FAILED');
    assert.match(
      status!.failure!,
      new RegExp(
        `bucket "no-such-bucket" does not exist at ${s3.endpoint.replace(/[.]/g, '\\.')}: create it, or correct the release's store \\(s3://no-such-bucket/2027/\\)`,
      ),
    );
    assert.equal(/\n\s+at /.test(status!.failure!), false, 'no stack trace');
  });

  it('fits a taxonomy on the release in the store: sample on the gpu host, fit and review pack on the cpu host, as the embedded default does', async () => {
    await startPools('fit');
    const fit = (release: ReturnType<typeof sampleReleaseInput>) => ({
      release: ReleaseInputSchema.parse(release),
      version: 'scale-k3',
      clusters: 3,
      pcaComponents: 4,
      maxSamples: 16,
      seed: 2,
      kmeansBatchSize: 8,
      perCluster: 4,
      thumbSize: 64,
    });
    const result: FitTaxonomyResult = await client.workflow.execute('fitTaxonomyWorkflow', {
      taskQueue: TASK_QUEUES.workflows,
      workflowId: fitTaxonomyWorkflowId('scale', 'scale-k3'),
      args: [
        fit({ ...sampleReleaseInput(path.join(tmp, 'cli-host'), t.mirror.baseUrl, 'scale'), store: 's3://biomedica/' }),
      ],
    });
    assert.equal(result.taxonomyPath, 'models/taxonomy-scale-k3.json');
    assert.ok(await store.head('releases/scale/taxonomy/scale-k3/sample.json'));
    assert.ok(await store.head('releases/scale/taxonomy/scale-k3/review-scale-k3/index.html'));
    assert.ok(await store.head('releases/scale/taxonomy/scale-k3/review-scale-k3/labels-to-fill.json'));
    // The same fit of the embedded default's run of the release: the same artifact, byte for byte.
    await t.startWorkers();
    try {
      await t.env.client.workflow.execute('fitTaxonomyWorkflow', {
        taskQueue: TASK_QUEUES.workflows,
        workflowId: fitTaxonomyWorkflowId('scale', 'scale-k3'),
        args: [fit(sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'scale'))],
      });
    } finally {
      await t.stopWorkers();
    }
    const fetched = path.join(tmp, 'fetched-fit', 'taxonomy.json');
    assert.equal(await store.download('models/taxonomy-scale-k3.json', fetched), true);
    assert.equal(await sha256File(fetched), await sha256File(path.join(t.dataDir, 'models', 'taxonomy-scale-k3.json')));
  });

  it("exports a subset of the release in the store on a cpu host, byte-identical to the embedded default's export", async () => {
    await startPools('export');
    const input: ExportInput = {
      dataDir: path.join(tmp, 'cli-host'),
      store: 's3://biomedica/',
      releaseId: 'scale',
      target: 'exports/commercial',
      filter: { subsets: ['commercial'] },
    };
    const started = await startOrAttachExport(client, input);
    assert.ok(started.kind === 'started', started.kind);
    await started.handle.result();
    const { store: _remote, ...embedded } = input;
    const local = await exportSubset({ ...embedded, dataDir: t.dataDir });
    assert.ok(local.samples > 0);
    const want: Record<string, string> = {};
    for (const f of fs.readdirSync(local.target, { recursive: true }).map(String).sort()) {
      const file = path.join(local.target, f);
      if (fs.statSync(file).isFile()) want[f.split(path.sep).join('/')] = await sha256File(file);
    }
    const got: Record<string, string> = {};
    for (const o of await store.list('exports/commercial/')) {
      const file = path.join(tmp, 'fetched-export', o.key);
      assert.equal(await store.download(o.key, file), true);
      got[o.key.slice('exports/commercial/'.length)] = await sha256File(file);
    }
    assert.ok(Object.keys(want).includes('export.json'));
    assert.deepEqual(got, want);
  });
});
