/**
 * The sample release on a production Temporal server: the server built from its Go module (v1.29.1) with
 * PostgreSQL 15 for persistence and visibility, started and stopped by scripts/temporal-cluster.sh. Every worker
 * pool runs against it; the shards and parquet files are byte-identical to the same release on the dev server,
 * and the histories are in PostgreSQL. (Pools on separate hosts with their own folders and object storage:
 * test/scale-out.test.ts.)
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { startRelease, releaseStatus } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import { projectRoot } from '../config/paths';
import { readWorkerEnv } from '../config/release';
import { createPoolWorkers, POOLS } from '../workers/pools';
import { createReleaseTestEnv, type ReleaseTestEnv } from './support/release-env';

const script = path.join(projectRoot, 'scripts', 'temporal-cluster.sh');

function digests(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const dir of ['webdataset', 'parquet']) {
    for (const f of fs.readdirSync(path.join(root, dir), { recursive: true }).map(String).sort()) {
      const file = path.join(root, dir, f);
      if (fs.statSync(file).isFile() && /\.(tar|parquet)$/.test(f))
        out[`${dir}/${f}`] = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    }
  }
  return out;
}

describe('the sample release on a production Temporal server with PostgreSQL', function () {
  this.timeout(900_000);
  let t: ReleaseTestEnv;
  let clusterDir: string;
  let address: string;
  let prodData: string;
  let client: Client;
  let connection: NativeConnection;
  let workers: Worker[] = [];
  let running: Promise<unknown> = Promise.resolve();

  before(async () => {
    clusterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-cluster-'));
    const port = 21000 + 1000 * Math.floor(Math.random() * 8) + 233;
    const out = execFileSync('bash', [script, 'start', clusterDir, String(port)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 600_000,
    });
    address = out.trim().split('\n').pop()!;
    assert.equal(address, `127.0.0.1:${port}`);
    t = await createReleaseTestEnv();
    prodData = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-prod-data-'));
    client = new Client({ connection: await Connection.connect({ address }), namespace: 'default' });
    connection = await NativeConnection.connect({ address });
    const env = readWorkerEnv({ ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default' });
    workers = (
      await Promise.all(POOLS.map((p) => createPoolWorkers(p, connection, { env, workflows: p === 'cpu' })))
    ).flat();
    running = Promise.all(workers.map((w) => w.run()));
  });
  after(async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await running.catch(() => undefined);
    await connection?.close();
    await client?.connection.close();
    await t?.teardown();
    if (clusterDir) execFileSync('bash', [script, 'stop', clusterDir], { stdio: 'ignore' });
    for (const d of [clusterDir, prodData]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it("completes there, with outputs byte-identical to the dev server's run, and its histories in PostgreSQL", async () => {
    const prod = await startRelease(client, sampleReleaseInput(prodData, t.mirror.baseUrl, 'prod'));
    assert.equal(prod.kind, 'started');
    await client.workflow.getHandle(prod.workflowId).result();
    assert.equal((await releaseStatus(client, 'prod'))?.status, 'COMPLETED');
    // The same release on the dev server (workers of this process on its own connection), into another data dir.
    await t.startWorkers();
    const dev = await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'prod'));
    await t.env.client.workflow.getHandle(dev.workflowId).result();
    const a = digests(path.join(prodData, 'releases', 'prod'));
    const b = digests(path.join(t.dataDir, 'releases', 'prod'));
    assert.ok(Object.keys(a).length >= 6, JSON.stringify(a));
    assert.deepEqual(a, b);
    // Persistence and visibility are the PostgreSQL databases: the release's workflows are rows there.
    const pgPort = Number(address.split(':')[1]) + 200;
    const rows = execFileSync(
      'psql',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(pgPort),
        '-U',
        'postgres',
        '-d',
        'temporal_visibility',
        '-tAc',
        "SELECT count(*) FROM executions_visibility WHERE workflow_id LIKE 'release-prod%'",
      ],
      { encoding: 'utf8' },
    );
    assert.ok(Number(rows.trim()) >= 4, `visibility rows: ${rows}`);
  });
});
