import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { fixturePaths } from '../config/paths';
import { releaseWorkflowId } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { startRelease } from '../cli/release';
import { ensureSampleMirror, sampleReleaseInput } from '../cli/sample';
import { startEutilsStandin, type EutilsStandin } from '../sample/eutils-standin';
import { startMirrorServer, type MirrorServer } from '../sample/mirror-server';
import type { ReleaseResult } from '../workflows/release';
import { DevServerProcess, freePort, WorkerProcess } from './support/processes';

/**
 * A cluster's layout on one machine: one process per pool, the workflows in a process of their own and the cpu pool
 * told not to host them (BIOMEDICA_CPU_HOSTS_WORKFLOWS=false), so CPU-bound activities never delay workflow tasks.
 */
describe('worker pools in separate processes, workflows on their own', function () {
  this.timeout(600_000);
  let dataDir: string;
  let server: DevServerProcess;
  let mirror: MirrorServer;
  let eutils: EutilsStandin;
  const workers: WorkerProcess[] = [];

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-pools-'));
    const built = await ensureSampleMirror(dataDir);
    mirror = await startMirrorServer(built.outDir);
    eutils = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
    server = new DevServerProcess(dataDir, await freePort(), await freePort());
    await server.start();
  });
  after(async () => {
    for (const w of workers) await w.kill();
    await server?.kill();
    await mirror?.close();
    await eutils?.close();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the sample release; only the workflows process polls the workflow task queue', async () => {
    const env = { TEMPORAL_ADDRESS: server.address, NCBI_EUTILS_URL: eutils.baseUrl, NCBI_EMAIL: 'tests@localhost', BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'false' };
    const byPool = new Map(['workflows', 'io', 'entrez', 'cpu', 'gpu'].map((p) => [p, new WorkerProcess(env, p)] as const));
    workers.push(...byPool.values());
    await Promise.all([...byPool.values()].map((w) => w.start()));
    const client = new Client({ connection: await Connection.connect({ address: server.address }) });
    await startRelease(client, sampleReleaseInput(dataDir, mirror.baseUrl, 'split-pools'));
    const result = (await client.workflow.getHandle(releaseWorkflowId('split-pools')).result()) as ReleaseResult;
    assert.equal(result.summary.samples, result.summary.figures - result.summary.rejected);
    assert.ok(result.summary.samples > 100);

    // temporal.api.enums.v1.TaskQueueType: 1 workflow, 2 activity.
    const pollers = async (name: string, type: 1 | 2) =>
      (await client.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name }, taskQueueType: type })).pollers.map((p) => p.identity ?? '');
    const workflowPollers = await pollers(TASK_QUEUES.workflows, 1);
    assert.ok(workflowPollers.length > 0);
    const own = `${byPool.get('workflows')!.pid}@`;
    assert.deepEqual(workflowPollers.filter((id) => !id.startsWith(own)), [], `workflow pollers ${workflowPollers.join(', ')}; workflows process ${own}`);
    const cpuPollers = await pollers(TASK_QUEUES.cpu, 2);
    assert.ok(cpuPollers.some((id) => id.startsWith(`${byPool.get('cpu')!.pid}@`)), 'the cpu process polls the cpu queue');
  });
});
