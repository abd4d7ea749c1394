import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { loadDevServerConfig, temporalCliPath } from '../../config/dev-server';
import { projectRoot } from '../../config/paths';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../../config/task-queues';
import { startHubStandin, type HubStandin, type HubStandinOptions } from '../../sample/hub-standin';
import { installQuietRuntime } from './runtime';

/** An activity worker in its own process: `npm run worker -- --pool io` (io + hub queues), as deployed. */
export interface WorkerProcess {
  /** Everything it printed (stdout and stderr): its logs. */
  logs(): string;
  /** SIGKILL: the process dies mid-activity, as a crashed machine would. */
  kill(): Promise<void>;
  /** SIGTERM and wait (graceful shutdown). */
  stop(): Promise<void>;
}

export interface HubTestEnv {
  env: TestWorkflowEnvironment;
  dataDir: string;
  hub: HubStandin;
  token: string;
  bundle: WorkflowBundleWithSourceMap;
  /** Lines this test process wrote to stderr through console.error (its workflow worker's logs). */
  localLogs: string[];
  /**
   * Starts `cli/main.ts worker --pool io` (io + hub queues, as deployed) with HF_TOKEN in its environment only;
   * `hubOnly`: a process with just the two Hub activities on the same queues and rate, which starts in a third of the
   * time (the full io pool loads every stage's activities).
   */
  startWorkerProcess(extraEnv?: Record<string, string>, opts?: { hubOnly?: boolean }): Promise<WorkerProcess>;
  /** The history as `temporal workflow show --output json` writes it (what test/histories/ holds). */
  historyJson(workflowId: string, runId?: string): string;
  teardown(): Promise<void>;
}

/** The Hub activities on the io and hub queues, with the hub queue's rate from HF_COMMITS_PER_HOUR (as workers/pools.ts). */
const HUB_ONLY_WORKER = `
const { DefaultLogger, NativeConnection, Runtime, Worker } = require('@temporalio/worker');
const { planHubPublish, commitHubBatch } = require('./activities/publish/hub-activity');
const { hubCommitRatePerSecond, readHubWorkerEnv } = require('./activities/publish/hub-env');
const { TASK_QUEUES } = require('./config/task-queues');
(async () => {
  Runtime.install({ logger: new DefaultLogger('INFO') });
  const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS });
  const workers = [
    await Worker.create({ connection, taskQueue: TASK_QUEUES.io, activities: { planHubPublish } }),
    await Worker.create({ connection, taskQueue: TASK_QUEUES.hub, activities: { commitHubBatch }, maxConcurrentActivityTaskExecutions: 4,
      maxTaskQueueActivitiesPerSecond: hubCommitRatePerSecond(readHubWorkerEnv()) }),
  ];
  process.once('SIGTERM', () => workers.forEach((w) => w.shutdown()));
  console.log('worker pools running: hub activities only');
  await Promise.all(workers.map((w) => w.run()));
  await connection.close();
})().catch((err) => { console.error(err); process.exit(1); });
`;

/**
 * A real Temporal dev server (the project's pinned CLI), the Hub stand-in, a workflow worker in this process (no
 * token here) and activity workers in child processes that alone get HF_TOKEN.
 */
export async function createHubTestEnv(opts: { standin?: HubStandinOptions } = {}): Promise<HubTestEnv> {
  installQuietRuntime();
  const localLogs: string[] = [];
  const origError = console.error;
  console.error = (...args: unknown[]) => {
    localLogs.push(args.map(String).join(' '));
    origError(...args);
  };
  const token = `hf_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}Zq`;
  delete process.env.HF_TOKEN;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-hubwf-'));
  const [env, bundle] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        searchAttributes: Object.values(SEARCH_ATTRIBUTES).map((name) =>
          defineSearchAttributeKey(name, SearchAttributeType.KEYWORD),
        ),
        log: { format: 'pretty', level: 'warn' },
        extraArgs: Object.entries(loadDevServerConfig().dynamicConfig).flatMap(([k, v]) => [
          '--dynamic-config-value',
          `${k}=${JSON.stringify(v)}`,
        ]),
      },
    }),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../workflows'),
      logger: {
        log: () => undefined,
        trace: () => undefined,
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
        error: () => undefined,
      },
    }),
  ]);
  const hub = await startHubStandin({ tokens: [token], ...opts.standin });
  const workflowWorker = await Worker.create({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue: TASK_QUEUES.workflows,
    workflowBundle: bundle,
  });
  const running = workflowWorker.run();
  const children: ChildProcess[] = [];

  async function startWorkerProcess(
    extraEnv: Record<string, string> = {},
    o: { hubOnly?: boolean } = {},
  ): Promise<WorkerProcess> {
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: 'default',
      HF_TOKEN: token,
      ...extraEnv,
    };
    const args = o.hubOnly
      ? ['--require', 'tsx/cjs', '-e', HUB_ONLY_WORKER]
      : ['--require', 'tsx/cjs', 'cli/main.ts', 'worker', '--pool', 'io'];
    const child = spawn(process.execPath, args, { cwd: projectRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (out.includes('worker pools running')) {
          clearInterval(timer);
          resolve();
        } else if (child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`the worker process exited: ${out}`));
        }
      }, 50);
    });
    return {
      logs: () => out,
      kill: async () => {
        child.kill('SIGKILL');
        await exited;
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
      },
    };
  }

  return {
    env,
    dataDir,
    hub,
    token,
    bundle,
    localLogs,
    startWorkerProcess,
    historyJson: (workflowId, runId) =>
      execFileSync(
        temporalCliPath(),
        [
          'workflow',
          'show',
          '-w',
          workflowId,
          ...(runId ? ['-r', runId] : []),
          '--output',
          'json',
          '--address',
          env.address,
          '--namespace',
          'default',
        ],
        { encoding: 'utf8', maxBuffer: 64 << 20 },
      ),
    async teardown() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      if (workflowWorker.getState() === 'RUNNING') workflowWorker.shutdown();
      await running.catch(() => undefined);
      await hub.close();
      await env.teardown();
      console.error = origError;
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
