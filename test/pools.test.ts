import * as assert from 'node:assert/strict';
import { Client, Connection } from '@temporalio/client';
import { releaseWorkflowId } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { startRelease } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import type { ReleaseResult } from '../workflows/release';
import { cpuPoolHostsWorkflows, POOLS } from '../workers/pools';
import { startSampleServices, WorkerProcess, type SampleServices } from './support/processes';

/**
 * A cluster's layout on one machine: one process per pool, the workflows in a process of their own and the cpu pool
 * told not to host them (BIOMEDICA_CPU_HOSTS_WORKFLOWS=false), so CPU-bound activities never delay workflow tasks.
 */
describe('worker pools in separate processes, workflows on their own', function () {
  this.timeout(600_000);
  let services: SampleServices;
  const workers: WorkerProcess[] = [];

  before(async () => {
    services = await startSampleServices('biomedica-pools-');
  });
  after(async () => {
    for (const w of workers) await w.kill();
    await services?.close();
  });

  it('runs the sample release; only the workflows process polls the workflow task queue', async () => {
    const { server, dataDir, mirror } = services;
    const env = { ...services.workerEnv, BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'false' };
    const byPool = new Map(
      ['workflows', 'io', 'entrez', 'cpu', 'gpu'].map((p) => [p, new WorkerProcess(env, p)] as const),
    );
    workers.push(...byPool.values());
    await Promise.all([...byPool.values()].map((w) => w.start()));
    const client = new Client({ connection: await Connection.connect({ address: server.address }) });
    await startRelease(client, sampleReleaseInput(dataDir, mirror.baseUrl, 'split-pools'));
    const result = (await client.workflow.getHandle(releaseWorkflowId('split-pools')).result()) as ReleaseResult;
    assert.equal(result.summary.samples, result.summary.figures - result.summary.rejected);
    assert.ok(result.summary.samples > 100);

    // temporal.api.enums.v1.TaskQueueType: 1 workflow, 2 activity.
    const pollers = async (name: string, type: 1 | 2) =>
      (
        await client.workflowService.describeTaskQueue({
          namespace: 'default',
          taskQueue: { name },
          taskQueueType: type,
        })
      ).pollers.map((p) => p.identity ?? '');
    const workflowPollers = await pollers(TASK_QUEUES.workflows, 1);
    assert.ok(workflowPollers.length > 0);
    const own = `${byPool.get('workflows')!.pid}@`;
    assert.deepEqual(
      workflowPollers.filter((id) => !id.startsWith(own)),
      [],
      `workflow pollers ${workflowPollers.join(', ')}; workflows process ${own}`,
    );
    const cpuPollers = await pollers(TASK_QUEUES.cpu, 2);
    assert.ok(
      cpuPollers.some((id) => id.startsWith(`${byPool.get('cpu')!.pid}@`)),
      'the cpu process polls the cpu queue',
    );
  });
});

describe('which process hosts the workflow task queue', () => {
  const off = { BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'false' };
  it('a cpu pool alone hosts it unless told not to', () => {
    assert.equal(cpuPoolHostsWorkflows(['cpu'], {}), true);
    assert.equal(cpuPoolHostsWorkflows(['cpu'], off), false);
    assert.equal(cpuPoolHostsWorkflows(['cpu'], { BIOMEDICA_CPU_HOSTS_WORKFLOWS: '0' }), false);
  });
  it('all pools in one process always host it, whatever the environment says (the embedded default)', () => {
    assert.equal(cpuPoolHostsWorkflows(POOLS, off), true);
    assert.equal(cpuPoolHostsWorkflows(['io', 'cpu'], off), true);
  });
  it('never with a workflows pool in the same process, nor without a cpu pool', () => {
    assert.equal(cpuPoolHostsWorkflows([...POOLS, 'workflows'], {}), false);
    assert.equal(cpuPoolHostsWorkflows(['io', 'gpu'], {}), false);
  });
});
