import * as assert from 'node:assert/strict';
import { PMC_OA_2026_SHAPE } from '../activities/simulate';
import { runSimulation } from '../bench/simulate';
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
    const shape = { ...PMC_OA_2026_SHAPE, articles: { commercial: 60_000, noncommercial: 25_000, other: 10_000 }, pmidBatchesPerUnit: 3 };
    const report = await runSimulation({ shape, window: 12, unitsPerRun: 8 });
    assert.equal(report.units, 24 + 10 + 4);
    assert.equal(report.byType.unitWorkflow?.executions, report.units);
    // 3 subset drivers; commercial (24 units, 8 per run) needs 3 runs, noncommercial 2, other 1: 6 executions.
    assert.equal(report.byType.subsetWorkflow?.executions, 6);
    assert.equal(report.byType.releaseWorkflow?.executions, 1);
    assert.ok(report.largestHistory.events < 400, `largest history ${report.largestHistory.events} events`);
  });
});
