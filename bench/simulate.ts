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
import { formatStageTable } from '../cli/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import { MAIN_STAGES, UNIT_STAGES, type UnitStage } from '../workflows/progress';
import { progressQuery, releaseWorkflow, type ReleaseProgress } from '../workflows/release';
import { subsetProgressQuery } from '../workflows/subset';

export interface SimulationReport {
  /** Every subset driver run: its history length. */
  driverRuns: number[];
  /** The release's progress query once every unit is done (per-stage table included). */
  finalProgress: ReleaseProgress;
  /** Live checks of the subset drivers' per-stage counts, taken while the release ran. */
  live: { snapshots: number; stagesSeenInFlight: UnitStage[]; violations: string[] };
  units: number;
  executions: number;
  byType: Record<string, { executions: number; maxHistory: number }>;
  largestHistory: { workflowId: string; type: string; events: number };
  seconds: number;
}

export async function runSimulation(
  opts: {
    shape?: SimulationShape;
    window?: number;
    unitsPerRun?: number;
    historyBudget?: number;
    log?: (s: string) => void;
  } = {},
): Promise<SimulationReport> {
  const shape = opts.shape ?? PMC_OA_2026_SHAPE;
  const log = opts.log ?? (() => undefined);
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      searchAttributes: Object.values(SEARCH_ATTRIBUTES).map((n) =>
        defineSearchAttributeKey(n, SearchAttributeType.KEYWORD),
      ),
      extraArgs: Object.entries(loadDevServerConfig().dynamicConfig).flatMap(([k, v]) => [
        '--dynamic-config-value',
        `${k}=${JSON.stringify(v)}`,
      ]),
    },
  });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-sim-'));
  try {
    const activities = createSimulatedActivities(shape);
    const workers = await Promise.all([
      ...[TASK_QUEUES.io, TASK_QUEUES.entrez, TASK_QUEUES.cpu, TASK_QUEUES.gpu].map((taskQueue) =>
        Worker.create({
          connection: env.nativeConnection,
          taskQueue,
          activities,
          maxConcurrentActivityTaskExecutions: 500,
        }),
      ),
      Worker.create({
        connection: env.nativeConnection,
        taskQueue: TASK_QUEUES.workflows,
        workflowsPath: require.resolve('../workflows'),
        maxCachedWorkflows: 2000,
        maxConcurrentWorkflowTaskExecutions: 100,
      }),
    ]);
    const release = ReleaseInputSchema.parse({
      releaseId: 'simulated-8m',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: dataDir },
      window: opts.window ?? 64,
      ...(opts.unitsPerRun ? { unitsPerRun: opts.unitsPerRun } : {}),
      ...(opts.historyBudget ? { historyBudget: opts.historyBudget } : {}),
    });
    const units = Object.values((await activities.planRelease(release)).subsets).reduce((n, s) => n + s.units, 0);
    log(
      `simulating ${units} units (${Object.values(shape.articles)
        .reduce((a, b) => a + b, 0)
        .toLocaleString()} articles), window ${release.window}`,
    );
    const started = Date.now();
    const running = Promise.all(workers.map((w) => w.run()));
    const ticker = setInterval(() => log(`  ${Math.round((Date.now() - started) / 1000)} s...`), 30_000);
    const live: SimulationReport['live'] = { snapshots: 0, stagesSeenInFlight: [], violations: [] };
    let finalProgress: ReleaseProgress;
    try {
      const handle = await env.client.workflow.start(releaseWorkflow, {
        workflowId: 'release-simulated-8m',
        taskQueue: TASK_QUEUES.workflows,
        args: [release],
      });
      let finished = false;
      const result = handle.result().finally(() => (finished = true));
      // While it runs, every driver's per-stage table must add up: each unit in flight is in exactly one main stage.
      while (!finished) {
        const p = await handle.query(progressQuery).catch(() => null);
        if (p?.stages) {
          // Every unit started is exactly once done with, in, or failed at fetch, in the release's table too.
          const f = p.stages.fetch;
          const started = p.units.done + p.units.failed + p.units.inFlight;
          if (f.done + f.inFlight + f.failed !== started)
            live.violations.push(`release: fetch counts ${JSON.stringify(f)} for ${started} units started`);
        }
        for (const id of p?.subsetWorkflows ?? []) {
          const sp = await env.client.workflow
            .getHandle(id)
            .query(subsetProgressQuery)
            .catch(() => null);
          if (!sp) continue;
          live.snapshots++;
          const inMain = MAIN_STAGES.reduce((n, st) => n + sp.stages[st].inFlight, 0);
          const f = sp.stages.fetch;
          if (f.done + f.inFlight + f.failed !== sp.done + sp.failed + sp.inFlight)
            live.violations.push(
              `${id}: fetch counts ${JSON.stringify(f)} for ${sp.done + sp.failed + sp.inFlight} units started`,
            );
          if (inMain !== sp.inFlight)
            live.violations.push(`${id}: ${inMain} in flight by stage, ${sp.inFlight} units in flight`);
          for (const st of UNIT_STAGES) {
            const r = sp.stages[st];
            if (r.done + r.inFlight + r.failed > sp.units)
              live.violations.push(`${id}: ${st} counts ${JSON.stringify(r)} exceed ${sp.units} units`);
            if (r.inFlight > 0 && !live.stagesSeenInFlight.includes(st)) live.stagesSeenInFlight.push(st);
          }
        }
        await Promise.race([result, new Promise((r) => setTimeout(r, 1000))]).catch(() => undefined);
      }
      await result;
      finalProgress = await handle.query(progressQuery);
    } finally {
      clearInterval(ticker);
      workers.forEach((w) => w.shutdown());
      await running;
    }
    const seconds = (Date.now() - started) / 1000;
    const byType: SimulationReport['byType'] = {};
    let largest = { workflowId: '', type: '', events: 0 };
    let executions = 0;
    const driverRuns: number[] = [];
    for await (const wf of env.client.workflow.list()) {
      executions++;
      if (wf.type === 'subsetWorkflow') driverRuns.push(wf.historyLength);
      const t = (byType[wf.type] ??= { executions: 0, maxHistory: 0 });
      t.executions++;
      t.maxHistory = Math.max(t.maxHistory, wf.historyLength);
      if (wf.historyLength > largest.events)
        largest = { workflowId: wf.workflowId, type: wf.type, events: wf.historyLength };
    }
    return { driverRuns, finalProgress, live, units, executions, byType, largestHistory: largest, seconds };
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
    articles: Object.fromEntries(
      Object.entries(PMC_OA_2026_SHAPE.articles).map(([k, v]) => [k, Math.round(v * scale)]),
    ) as SimulationShape['articles'],
  };
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  runSimulation({ shape, log: console.log }).then(
    (r) => {
      console.log(`simulated release: ${r.units} units in ${r.seconds.toFixed(0)} s`);
      for (const [type, t] of Object.entries(r.byType))
        console.log(`  ${type}: ${t.executions} executions, largest history ${t.maxHistory} events`);
      console.log(`total executions: ${r.executions}`);
      console.log(`per-stage progress at the end (the release's progress query):`);
      if (r.finalProgress.stages)
        for (const line of formatStageTable(r.finalProgress.stages, r.units)) console.log(line);
      console.log(
        `live driver snapshots: ${r.live.snapshots}, stages seen in flight: ${r.live.stagesSeenInFlight.join(', ')}; inconsistencies: ${r.live.violations.length}`,
      );
      console.log(
        `largest history: ${r.largestHistory.events} events (${r.largestHistory.type} ${r.largestHistory.workflowId}); Temporal warns at 10,240`,
      );
      process.exit(r.largestHistory.events < 10_240 ? 0 : 1);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
