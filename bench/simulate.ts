/**
 * Simulation: the real release, subset and unit workflows with tiny activities (activities/simulate.ts), run on a
 * real Temporal dev server, shaped like the full PMC OA subset (8.2 million articles, about 3,300 units).
 * Prints the largest history of any execution and the number of executions.
 *
 *   npm run simulate                 # full shape
 *   npm run simulate -- --scale 0.1  # a tenth of it
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { createSimulatedActivities, PMC_OA_2026_SHAPE, type SimulationShape } from '../activities/simulate';
import { loadDevServerConfig, temporalCliPath } from '../config/dev-server';
import { ReleaseInputSchema } from '../config/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import { releaseWorkflow } from '../workflows/release';

export interface SimulationReport {
  units: number;
  executions: number;
  byType: Record<string, { executions: number; maxHistory: number }>;
  largestHistory: { workflowId: string; type: string; events: number };
  seconds: number;
}

export async function runSimulation(opts: { shape?: SimulationShape; window?: number; unitsPerRun?: number; log?: (s: string) => void } = {}): Promise<SimulationReport> {
  const shape = opts.shape ?? PMC_OA_2026_SHAPE;
  const log = opts.log ?? (() => undefined);
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      searchAttributes: Object.values(SEARCH_ATTRIBUTES).map((n) => defineSearchAttributeKey(n, SearchAttributeType.KEYWORD)),
      extraArgs: Object.entries(loadDevServerConfig().dynamicConfig).flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${JSON.stringify(v)}`]),
    },
  });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-sim-'));
  try {
    const activities = createSimulatedActivities(shape);
    const workers = await Promise.all([
      ...[TASK_QUEUES.io, TASK_QUEUES.entrez, TASK_QUEUES.cpu, TASK_QUEUES.gpu].map((taskQueue) =>
        Worker.create({ connection: env.nativeConnection, taskQueue, activities, maxConcurrentActivityTaskExecutions: 500 }),
      ),
      Worker.create({ connection: env.nativeConnection, taskQueue: TASK_QUEUES.workflows, workflowsPath: require.resolve('../workflows'), maxCachedWorkflows: 2000, maxConcurrentWorkflowTaskExecutions: 100 }),
    ]);
    const release = ReleaseInputSchema.parse({
      releaseId: 'simulated-8m',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: dataDir },
      window: opts.window ?? 64,
      ...(opts.unitsPerRun ? { unitsPerRun: opts.unitsPerRun } : {}),
    });
    const units = Object.values((await activities.planRelease(release)).subsets).reduce((n, s) => n + s.units, 0);
    log(`simulating ${units} units (${Object.values(shape.articles).reduce((a, b) => a + b, 0).toLocaleString()} articles), window ${release.window}`);
    const started = Date.now();
    const running = Promise.all(workers.map((w) => w.run()));
    const ticker = setInterval(() => log(`  ${Math.round((Date.now() - started) / 1000)} s...`), 30_000);
    try {
      await env.client.workflow.execute(releaseWorkflow, { workflowId: 'release-simulated-8m', taskQueue: TASK_QUEUES.workflows, args: [release] });
    } finally {
      clearInterval(ticker);
      workers.forEach((w) => w.shutdown());
      await running;
    }
    const seconds = (Date.now() - started) / 1000;
    const byType: SimulationReport['byType'] = {};
    let largest = { workflowId: '', type: '', events: 0 };
    let executions = 0;
    for await (const wf of env.client.workflow.list()) {
      executions++;
      const t = (byType[wf.type] ??= { executions: 0, maxHistory: 0 });
      t.executions++;
      t.maxHistory = Math.max(t.maxHistory, wf.historyLength);
      if (wf.historyLength > largest.events) largest = { workflowId: wf.workflowId, type: wf.type, events: wf.historyLength };
    }
    return { units, executions, byType, largestHistory: largest, seconds };
  } finally {
    await env.teardown();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const i = process.argv.indexOf('--scale');
  const scale = i >= 0 ? Number(process.argv[i + 1]) : 1;
  const shape: SimulationShape = {
    ...PMC_OA_2026_SHAPE,
    articles: Object.fromEntries(Object.entries(PMC_OA_2026_SHAPE.articles).map(([k, v]) => [k, Math.round(v * scale)])) as SimulationShape['articles'],
  };
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  runSimulation({ shape, log: console.log }).then(
    (r) => {
      console.log(`simulated release: ${r.units} units in ${r.seconds.toFixed(0)} s`);
      for (const [type, t] of Object.entries(r.byType)) console.log(`  ${type}: ${t.executions} executions, largest history ${t.maxHistory} events`);
      console.log(`total executions: ${r.executions}`);
      console.log(`largest history: ${r.largestHistory.events} events (${r.largestHistory.type} ${r.largestHistory.workflowId}); Temporal warns at 10,240`);
      process.exit(r.largestHistory.events < 10_240 ? 0 : 1);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
