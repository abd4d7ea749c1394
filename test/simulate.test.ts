import * as assert from 'node:assert/strict';
import { PMC_OA_2026_SHAPE } from '../activities/simulate';
import { runSimulation } from '../bench/simulate';
import { UNIT_STAGES } from '../workflows/progress';
import { installQuietRuntime } from './support/runtime';

/**
 * The simulation mode, scaled down for CI: the real release, subset and unit workflows with tiny activities.
 * Subset drivers must continue as new so no history grows with the release (`npm run simulate` runs the full
 * 8.2-million-article shape).
 */
describe('simulated release (real workflows, tiny activities)', function () {
  this.timeout(600_000);
  before(installQuietRuntime);

  it('runs every unit, continues the subset drivers as new, and keeps every history small', async () => {
    const shape = {
      ...PMC_OA_2026_SHAPE,
      articles: { commercial: 60_000, noncommercial: 25_000, other: 10_000 },
      pmidBatchesPerUnit: 3,
    };
    const report = await runSimulation({ shape, window: 12, unitsPerRun: 8 });
    assert.equal(report.units, 24 + 10 + 4);
    assert.equal(report.byType.unitWorkflow?.executions, report.units);
    // 3 subset drivers; commercial (24 units, 8 per run) needs 3 runs, noncommercial 2, other 1: 6 executions.
    assert.equal(report.byType.subsetWorkflow?.executions, 6);
    assert.equal(report.byType.releaseWorkflow?.executions, 1);
    assert.ok(report.largestHistory.events < 600, `largest history ${report.largestHistory.events} events`);

    // The release's progress query has the per-stage table: every unit through every stage, none failed, and the
    // simulated rejections (figures without a sample, in the images stage) counted exactly.
    const stages = report.finalProgress.stages;
    assert.ok(stages, 'the release reports per-stage progress');
    const figures = shape.articlesPerUnit * shape.figuresPerArticle;
    const rejectedPerUnit = figures - Math.floor(figures * 0.8);
    for (const st of UNIT_STAGES) {
      assert.equal(stages[st].done, report.units, `${st} done`);
      assert.equal(stages[st].inFlight, 0, `${st} in flight`);
      assert.equal(stages[st].failed, 0, `${st} failed`);
      assert.equal(stages[st].rejected, st === 'images' ? report.units * rejectedPerUnit : 0, `${st} rejected`);
      assert.ok(stages[st].unitsPerHour !== null && stages[st].unitsPerHour > 0, `${st} has a rate`);
      assert.equal(stages[st].etaSeconds, 0, `${st}: nothing left`);
    }
    assert.deepEqual(report.finalProgress.units, { total: report.units, done: report.units, inFlight: 0, failed: 0 });
    // While it ran, the drivers' live tables added up (each unit in flight in exactly one stage), and units were
    // seen in flight in the stages after fetch too (so the units' stage reports arrived).
    assert.ok(report.live.snapshots > 10, `${report.live.snapshots} snapshots`);
    assert.deepEqual(report.live.violations, []);
    assert.ok(
      report.live.stagesSeenInFlight.some((st) => st !== 'fetch'),
      `seen in flight: ${report.live.stagesSeenInFlight.join(', ')}`,
    );
  });

  it('ends a driver run on its history budget, not only on a unit count', async () => {
    const shape = {
      ...PMC_OA_2026_SHAPE,
      articles: { commercial: 50_000, noncommercial: 10_000, other: 5_000 },
      pmidBatchesPerUnit: 2,
    };
    const budget = 300;
    const report = await runSimulation({ shape, window: 6, unitsPerRun: 2000, historyBudget: budget });
    assert.equal(report.units, 20 + 4 + 2);
    assert.equal(report.byType.unitWorkflow?.executions, report.units);
    // No unit count could end a run (2000 per run): the commercial driver continued as new on its budget.
    assert.ok(report.byType.subsetWorkflow!.executions > 3, `${report.byType.subsetWorkflow!.executions} driver runs`);
    // Each run stays within the budget, plus its last report and the continue-as-new itself.
    for (const events of report.driverRuns)
      assert.ok(events <= budget + 10, `a driver run of ${events} events (budget ${budget})`);
    for (const st of UNIT_STAGES)
      assert.equal(report.finalProgress.stages?.[st].done, report.units, `${st} done across runs`);
    assert.deepEqual(report.live.violations, []);
  });
});
