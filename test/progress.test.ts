import * as assert from 'node:assert/strict';
import {
  addFailed,
  addFinished,
  emptyTotals,
  laterReport,
  mergeTables,
  noRejections,
  stageTable,
  UNIT_STAGES,
  type UnitReport,
  type UnitStage,
} from '../workflows/progress';
import { ReleaseInputSchema } from '../config/release';
import { DRIVER_EVENTS_PER_UNIT, HISTORY_BUDGET, maxWindowFor } from '../config/history';

const report = (
  unitId: string,
  stage: UnitStage,
  enrichDone = false,
  rejected: Partial<Record<UnitStage, number>> = {},
): UnitReport => ({
  unitId,
  stage,
  enrichDone,
  rejected: { ...noRejections(), ...rejected },
});

const HOUR = 3_600_000;

describe('per-stage progress counting', () => {
  it('counts finished units as done in every stage, with their rejections', () => {
    const totals = emptyTotals();
    addFinished(totals, { ...noRejections(), parse: 2, images: 5 });
    addFinished(totals, undefined); // a result recorded before per-stage progress
    for (const st of UNIT_STAGES) assert.equal(totals[st].done, 2);
    assert.equal(totals.parse.rejected, 2);
    assert.equal(totals.images.rejected, 5);
    assert.equal(totals.fetch.rejected, 0);
  });

  it('counts a failed unit as failed in the stage it was in, done in the ones before, and nowhere after', () => {
    const totals = emptyTotals();
    addFailed(totals, report('u1', 'annotate', false, { fetch: 1, images: 3 }));
    assert.deepEqual(
      UNIT_STAGES.map((st) => [st, totals[st].done, totals[st].failed]),
      [
        ['fetch', 1, 0],
        ['parse', 1, 0],
        ['enrich', 0, 0], // still running beside annotate: neither done nor the failure
        ['images', 1, 0],
        ['annotate', 0, 1],
        ['shard', 0, 0],
      ],
    );
    assert.equal(totals.images.rejected, 3);
    // A unit that failed before any report (in fetch).
    addFailed(totals, undefined);
    assert.equal(totals.fetch.failed, 1);
  });

  it('places units in flight in exactly one main stage, and enrich beside images and annotate', () => {
    const live = [
      report('a', 'fetch'),
      report('b', 'images'),
      report('c', 'annotate', true),
      report('d', 'shard', true),
      report('e', 'parse'),
    ];
    const t = stageTable(emptyTotals(), live, 10, null, 0);
    assert.deepEqual(
      UNIT_STAGES.map((st) => [st, t[st].done, t[st].inFlight]),
      [
        ['fetch', 4, 1],
        ['parse', 3, 1],
        ['enrich', 2, 1], // c and d are through it, b is in it, a and e have not reached it
        ['images', 2, 1],
        ['annotate', 1, 1],
        ['shard', 0, 1],
      ],
    );
    const main = (['fetch', 'parse', 'images', 'annotate', 'shard'] as const).reduce((n, st) => n + t[st].inFlight, 0);
    assert.equal(main, live.length);
    assert.equal(t.fetch.unitsPerHour, null, 'no rate without a start time');
  });

  it('keeps the later of two reports: a stage never goes back', () => {
    const a = report('u', 'images');
    assert.equal(laterReport(a, report('u', 'parse')), a);
    const b = report('u', 'annotate');
    assert.equal(laterReport(a, b), b);
    const c = report('u', 'annotate', true);
    assert.equal(laterReport(b, c), c);
    assert.equal(laterReport(c, b), c);
    assert.equal(laterReport(undefined, a), a);
  });

  it('gives a rate per stage since the start and the time left at that rate', () => {
    const totals = emptyTotals();
    for (let i = 0; i < 10; i++) addFinished(totals, undefined);
    const t = stageTable(totals, [report('x', 'images')], 40, 0, 2 * HOUR);
    assert.equal(t.shard.unitsPerHour, 5); // 10 units in 2 hours
    assert.equal(t.shard.etaSeconds, 6 * 3600); // 30 units left at 5 an hour
    assert.equal(t.fetch.unitsPerHour, 5.5); // 11 through fetch
    assert.equal(t.fetch.etaSeconds, Math.round((29 / 5.5) * 3600));
  });

  it('adds subset tables: counts and rates add up, the ETA is the slowest subset', () => {
    const a = stageTable(
      (() => {
        const t = emptyTotals();
        addFinished(t, { ...noRejections(), images: 2 });
        return t;
      })(),
      [report('a1', 'parse')],
      4,
      0,
      HOUR,
    );
    const b = stageTable(emptyTotals(), [report('b1', 'shard', true)], 2, 0, HOUR);
    const m = mergeTables([a, b]);
    assert.equal(m.fetch.done, 3);
    assert.equal(m.parse.inFlight, 1);
    assert.equal(m.shard.inFlight, 1);
    assert.equal(m.images.rejected, 2);
    assert.equal(m.fetch.unitsPerHour, 3);
    assert.equal(m.fetch.etaSeconds, Math.max(a.fetch.etaSeconds!, b.fetch.etaSeconds!));
    assert.equal(m.shard.unitsPerHour, 1, 'b has no unit through shard yet: only a rates');
  });
});

describe('the window and the history budget of a release', () => {
  const base = {
    releaseId: 'budget-check',
    dataDir: '/tmp/budget-check',
    source: { kind: 'pmc-cloud-dir', root: '/tmp/mirror' },
  } as const;
  const parse = (extra: Record<string, number>) => ReleaseInputSchema.safeParse({ ...base, ...extra });

  it('accepts the defaults, and the largest window a budget serves: two windows a driver run', () => {
    assert.ok(parse({}).success);
    assert.equal(maxWindowFor(HISTORY_BUDGET), 100);
    assert.ok(parse({ window: 100 }).success);
    assert.ok(parse({ window: 200, historyBudget: 10_000 }).success);
  });

  it('refuses a larger window, saying which budget it needs', () => {
    const r = parse({ window: 150 });
    assert.equal(r.success, false);
    const issue = r.error!.issues[0]!;
    assert.deepEqual(issue.path, ['window']);
    assert.match(issue.message, /window of 150 needs historyBudget >= 7500 .*at most 100/);
    assert.ok(parse({ window: 150, historyBudget: 7500 }).success);
    assert.equal(parse({ window: 201, historyBudget: 10_000 }).success, false, 'no budget serves 201');
  });

  it('leaves a driver run room for two windows of units at the most each unit costs', () => {
    for (const budget of [200, 300, 5_000, 10_000]) {
      const w = maxWindowFor(budget);
      assert.ok(
        2 * w * DRIVER_EVENTS_PER_UNIT <= budget && 2 * (w + 1) * DRIVER_EVENTS_PER_UNIT > budget,
        `budget ${budget}: window ${w}`,
      );
    }
  });
});
