import * as os from 'node:os';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import {
  cpuActivities,
  entrezActivities,
  gpuActivities,
  hubActivities,
  ioActivities,
  workflowQueueActivities,
  type PoolName,
} from '../activities';
import { hubCommitRatePerSecond, readHubWorkerEnv } from '../activities/publish/hub-env';
import { entrezRatePerSecond, readWorkerEnv, type WorkerEnv } from '../config/release';
import { connectOptions, temporalConnectionConfig, unreachable } from '../config/connection';
import { loadEnv } from '../config/env';
import { closeCpuThreads } from '../activities/common/threads';
import { TASK_QUEUES } from '../config/task-queues';

/** The activity pools; all of them in one process is the embedded default (the cpu pool then hosts the workflows). */
export const POOLS: readonly PoolName[] = ['io', 'entrez', 'cpu', 'gpu'];

/**
 * What one worker process can run: an activity pool, or `workflows` alone (the workflow task queue only). On a
 * cluster, run the workflows on their own small processes and set BIOMEDICA_CPU_HOSTS_WORKFLOWS=false on the cpu
 * pool: CPU-bound activities share the Node main thread with the worker's polling, and a busy one delays workflow
 * tasks (then Temporal moves them off the sticky queue and the worker replays whole histories).
 */
export type WorkerPool = PoolName | 'workflows';
export const WORKER_POOLS: readonly WorkerPool[] = [...POOLS, 'workflows'];

export function isWorkerPool(name: string | undefined): name is WorkerPool {
  return WORKER_POOLS.includes(name as WorkerPool);
}

/** Whether the cpu pool also hosts the workflow task queue (yes unless BIOMEDICA_CPU_HOSTS_WORKFLOWS=false or 0). */
export function cpuHostsWorkflows(env: NodeJS.ProcessEnv = process.env): boolean {
  return loadEnv(env).BIOMEDICA_CPU_HOSTS_WORKFLOWS;
}

/**
 * Whether the cpu pool of a process running `pools` hosts the workflow task queue. BIOMEDICA_CPU_HOSTS_WORKFLOWS
 * applies to a cpu pool running alone (workflows then run on a `workflows` pool elsewhere); a process running
 * several pools without the workflows pool always hosts them, so the embedded default can never be left without.
 */
export function cpuPoolHostsWorkflows(pools: readonly WorkerPool[], env: NodeJS.ProcessEnv = process.env): boolean {
  if (!pools.includes('cpu') || pools.includes('workflows')) return false;
  return pools.length > 1 || cpuHostsWorkflows(env);
}

export interface PoolOptions {
  env?: WorkerEnv;
  /** Also host the workflow task queue (the cpu pool does by default, the workflows pool always). */
  workflows?: boolean;
}

/**
 * The workers of one pool. Task-queue-wide limits that protect remote services (NCBI's requests per second)
 * are set on the queue itself, so any number of these workers on any number of machines stays within them.
 */
export async function createPoolWorkers(
  pool: WorkerPool,
  connection: NativeConnection,
  opts: PoolOptions = {},
): Promise<Worker[]> {
  const env = opts.env ?? readWorkerEnv();
  const base = { connection, namespace: env.TEMPORAL_NAMESPACE } satisfies Partial<WorkerOptions>;
  const workers: Worker[] = [];
  switch (pool) {
    case 'io':
      workers.push(
        await Worker.create({
          ...base,
          taskQueue: TASK_QUEUES.io,
          activities: ioActivities,
          maxConcurrentActivityTaskExecutions: 16,
        }),
      );
      workers.push(await Worker.create({ ...base, ...hubQueueWorkerOptions() }));
      break;
    case 'entrez':
      workers.push(
        await Worker.create({
          ...base,
          taskQueue: TASK_QUEUES.entrez,
          activities: entrezActivities,
          maxConcurrentActivityTaskExecutions: 4,
          maxTaskQueueActivitiesPerSecond: entrezRatePerSecond(env),
        }),
      );
      break;
    case 'cpu':
      workers.push(
        await Worker.create({
          ...base,
          taskQueue: TASK_QUEUES.cpu,
          activities: cpuActivities,
          maxConcurrentActivityTaskExecutions: Math.max(1, os.cpus().length),
        }),
      );
      break;
    case 'gpu':
      // One slot per GPU: the model is loaded once per process and one batch at a time keeps the device busy.
      workers.push(
        await Worker.create({
          ...base,
          taskQueue: TASK_QUEUES.gpu,
          activities: gpuActivities,
          maxConcurrentActivityTaskExecutions: env.GPU_SLOTS,
        }),
      );
      break;
    case 'workflows':
      break;
  }
  if (pool === 'workflows' || (opts.workflows ?? (pool === 'cpu' && cpuHostsWorkflows()))) {
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: TASK_QUEUES.workflows,
        workflowsPath: require.resolve('../workflows'),
        activities: workflowQueueActivities,
      }),
    );
  }
  return workers;
}

/**
 * The hub queue's worker, hosted by the io pool: Hub commits only, dispatched at a queue-wide rate under the Hub's
 * commit limit (HF_COMMITS_PER_HOUR, retries included) whatever the number of io workers. Commits of one repo run
 * one at a time anyway (each carries its parentCommit); a few slots let releases publish to different repos at once.
 */
export function hubQueueWorkerOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    taskQueue: TASK_QUEUES.hub,
    activities: hubActivities,
    maxConcurrentActivityTaskExecutions: 4,
    maxTaskQueueActivitiesPerSecond: hubCommitRatePerSecond(readHubWorkerEnv(env)),
  } satisfies Partial<WorkerOptions>;
}

/** Runs the given pools until `signal` aborts (or a worker fails), then shuts them down gracefully. */
export async function runPools(
  pools: readonly WorkerPool[],
  opts: { env?: WorkerEnv; signal?: AbortSignal; onReady?: () => void } = {},
): Promise<void> {
  const env = opts.env ?? readWorkerEnv();
  const cfg = temporalConnectionConfig(process.env, { address: env.TEMPORAL_ADDRESS });
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect(connectOptions(cfg));
  } catch (err) {
    throw unreachable(cfg, err);
  }
  try {
    const workers = (
      await Promise.all(
        pools.map((p) =>
          createPoolWorkers(p, connection, {
            env,
            ...(p === 'cpu' ? { workflows: cpuPoolHostsWorkflows(pools) } : {}),
          }),
        ),
      )
    ).flat();
    const stop = () => workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
    opts.signal?.addEventListener('abort', stop, { once: true });
    const running = Promise.all(workers.map((w) => w.run()));
    opts.onReady?.();
    try {
      await running;
    } catch (err) {
      stop();
      throw err;
    }
  } finally {
    await closeCpuThreads();
    await connection.close();
  }
}
