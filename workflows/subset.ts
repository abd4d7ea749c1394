import {
  CancellationScope,
  condition,
  isCancellation,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  ParentClosePolicy,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { releaseLocation } from '../config/location';
import type { ReleaseInput, Subset } from '../config/release';
import { DRIVER_EVENTS_PER_UNIT } from '../config/history';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import {
  addFailed,
  addFinished,
  laterReport,
  noRejections,
  stageTable,
  type StageTable,
  type StageTotals,
  type UnitReport,
  type UnitStage,
} from './progress';
import { unitStageSignal, unitWorkflow } from './unit';

export const subsetKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.subset, SearchAttributeType.KEYWORD);
const releaseKeyForSubset = defineSearchAttributeKey(SEARCH_ATTRIBUTES.release, SearchAttributeType.KEYWORD);

/** Everything a subset driver carries across continue-as-new: a few numbers, never unit lists. */
export interface SubsetState {
  release: ReleaseInput;
  subset: Subset;
  /** Units planned for this subset: unit i is `${subset}-${i, 6 digits}`. */
  units: number;
  nextIndex: number;
  done: number;
  failed: number;
  samples: number;
  articles: number;
  failures: string[];
  paused: boolean;
  /** Runs of this driver so far (1 + continue-as-new count). */
  runs: number;
  /** Units started per run before continuing as new. */
  unitsPerRun: number;
  /** Per-stage counts of finished and failed units. */
  stages: Record<UnitStage, StageTotals>;
  /** When this driver started its first unit (ms since the epoch, workflow time); the rates count from it. */
  startedAt: number | null;
  /** Reports sent to the release so far, across runs: each report carries its number, so the release keeps the latest. */
  reports: number;
}

export interface SubsetProgress {
  subset: Subset;
  units: number;
  done: number;
  inFlight: number;
  failed: number;
  samples: number;
  paused: boolean;
  runs: number;
  /** Per stage: units done, in flight, failed, rejections, rate and ETA. */
  stages: StageTable;
  /** Workflow time the counts are from (the driver's last event; ms since the epoch). */
  asOf: number;
  /** The report's number (1, 2, ...; 0 for a query's answer): signals may arrive out of order, a later one wins. */
  seq: number;
}

export type SubsetResult = Omit<
  SubsetState,
  'release' | 'nextIndex' | 'paused' | 'unitsPerRun' | 'startedAt' | 'reports'
>;

export const subsetProgressQuery = defineQuery<SubsetProgress>('subsetProgress');
export const pauseSignal = defineSignal('pause');
/** A subset driver's progress, sent to its release every few finished units (and when it ends or continues as new). */
export const subsetReportSignal = defineSignal<[SubsetProgress]>('subsetReport');
export const resumeSignal = defineSignal('resume');

/** Units started per run before continuing as new, at most (the history budget usually ends a run first). */
export const UNITS_PER_RUN = 400;

export { DRIVER_EVENTS_PER_UNIT, HISTORY_BUDGET } from '../config/history';

export function unitIdOf(subset: Subset, index: number): string {
  return `${subset}-${String(index).padStart(6, '0')}`;
}

/**
 * Drives one license subset: a sliding window of unit workflows (`release.window` in flight), pausable between
 * units, continuing as new with only counters in its state when its history nears the budget (or the server
 * suggests it), or after `unitsPerRun` units.
 */
export async function subsetWorkflow(state: SubsetState): Promise<SubsetResult> {
  let inFlight = 0;
  const totals = state.stages;
  /** The latest report of every unit in flight (at most `window` of them; never carried across continue-as-new). */
  const live = new Map<string, UnitReport>();
  const progress = (): SubsetProgress => ({
    subset: state.subset,
    units: state.units,
    done: state.done,
    inFlight,
    failed: state.failed,
    samples: state.samples,
    paused: state.paused,
    runs: state.runs,
    stages: stageTable(totals, live.values(), state.units, state.startedAt, Date.now()),
    asOf: Date.now(),
    seq: 0,
  });
  setHandler(subsetProgressQuery, progress);
  setHandler(pauseSignal, () => void (state.paused = true));
  setHandler(resumeSignal, () => void (state.paused = false));
  setHandler(unitStageSignal, (report) => {
    // Only units of this run that are still in flight: a stray or late report must not count twice.
    if (live.has(report.unitId)) live.set(report.unitId, laterReport(live.get(report.unitId), report));
  });
  upsertSearchAttributes([
    { key: releaseKeyForSubset, value: state.release.releaseId },
    { key: subsetKey, value: state.subset },
  ]);
  const parentId = workflowInfo().parent?.workflowId ?? `release-${state.release.releaseId}`;
  // Units report their stages here, and the driver reports its counts to the release now and then (about 100 times
  // over the whole subset), so the release's own progress query has the per-stage table.
  const reportEvery = Math.max(1, Math.ceil(state.units / 100));
  let sinceReport = 0;
  const reportToRelease = async () => {
    sinceReport = 0;
    if (!workflowInfo().parent) return;
    await getExternalWorkflowHandle(workflowInfo().parent!.workflowId)
      .signal(subsetReportSignal, { ...progress(), seq: ++state.reports })
      .catch((err: unknown) => {
        if (isCancellation(err)) throw err;
      });
  };
  state.startedAt ??= Date.now();
  const startedThisRun = { n: 0 };
  const running = new Set<Promise<void>>();
  const details = () =>
    setCurrentDetails(
      `${state.subset}: ${state.done}/${state.units} units done, ${inFlight} in flight, ${state.failed} failed, ${state.samples} samples${state.paused ? ' (paused)' : ''}`,
    );

  // A run ends on its history's length, not only on a unit count, so its history stays under the budget however
  // little the window batches.
  const budget = state.release.historyBudget;
  const overBudget = () =>
    workflowInfo().continueAsNewSuggested ||
    workflowInfo().historyLength + (running.size + 1) * DRIVER_EVENTS_PER_UNIT >= budget;
  try {
    while (state.nextIndex < state.units && startedThisRun.n < state.unitsPerRun) {
      await condition(() => !state.paused && running.size < state.release.window);
      if (startedThisRun.n > 0 && overBudget()) break;
      const unitId = unitIdOf(state.subset, state.nextIndex);
      const child = await startChild(unitWorkflow, {
        workflowId: `${parentId}/${unitId}`,
        taskQueue: TASK_QUEUES.workflows,
        args: [
          { release: state.release, unitId },
          { workflowId: workflowInfo().workflowId, runId: workflowInfo().runId },
        ],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: [
          { key: releaseKeyForSubset, value: state.release.releaseId },
          { key: subsetKey, value: state.subset },
        ],
        // What the Temporal UI shows for the run: the unit's place in the release and where its articles are.
        staticSummary: `unit ${state.nextIndex + 1} of ${state.units} (${state.subset}) of release ${state.release.releaseId}`,
        staticDetails: `articles: plan/units/${unitId}.json; outputs: webdataset/${state.subset}/${unitId.slice(-6)}*.tar, units/${unitId}/ (in ${releaseLocation(state.release)})`,
      });
      state.nextIndex++;
      startedThisRun.n++;
      inFlight++;
      live.set(unitId, { unitId, stage: 'fetch', enrichDone: false, rejected: noRejections() });
      details();
      // One callback settles a unit: its counts move from `live` to the totals in the same step, so no report
      // taken in between (another unit's, in the same activation) counts it twice.
      const settle = (finished: () => void) => {
        finished();
        inFlight--;
        live.delete(unitId);
        running.delete(p);
        details();
        if (++sinceReport >= reportEvery) reportToRelease().catch(() => undefined);
      };
      const p: Promise<void> = child.result().then(
        (r) =>
          settle(() => {
            state.done++;
            state.samples += r.shard.samples;
            state.articles += r.articles;
            addFinished(totals, r.rejected);
          }),
        (err: Error) =>
          settle(() => {
            // Cancelled with the release: neither done nor failed (a later start of the release runs it again).
            if (isCancellation(err)) return;
            state.failed++;
            addFailed(totals, live.get(unitId));
            if (state.failures.length < 20) state.failures.push(`${unitId}: ${err.message}`);
          }),
      );
      running.add(p);
    }
    // Drain before continuing as new: children must not outlive the run that awaits them.
    await Promise.all(running);
  } catch (err) {
    // Cancelled: wait until every unit has finished cancelling, so a later run of the release never meets one
    // still running under the same workflow id.
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => Promise.all(running));
    throw err;
  }
  details();
  await reportToRelease();
  if (state.nextIndex < state.units) {
    await continueAsNew<typeof subsetWorkflow>({ ...state, runs: state.runs + 1 });
  }
  const { release: _r, nextIndex: _n, paused: _p, unitsPerRun: _u, startedAt: _s, reports: _q, ...result } = state;
  return result;
}
