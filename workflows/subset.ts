import {
  CancellationScope,
  condition,
  isCancellation,
  continueAsNew,
  defineQuery,
  defineSignal,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  ParentClosePolicy,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { ReleaseInput, Subset } from '../config/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import { unitWorkflow } from './unit';

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
}

export type SubsetResult = Omit<SubsetState, 'release' | 'nextIndex' | 'paused' | 'unitsPerRun'>;

export const subsetProgressQuery = defineQuery<SubsetProgress>('subsetProgress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');

/** Units started per run before continuing as new: keeps each history near 3,000 events whatever the subset's size. */
export const UNITS_PER_RUN = 400;

export function unitIdOf(subset: Subset, index: number): string {
  return `${subset}-${String(index).padStart(6, '0')}`;
}

/**
 * Drives one license subset: a sliding window of unit workflows (`release.window` in flight), pausable between
 * units, continuing as new every UNITS_PER_RUN units with only counters in its state.
 */
export async function subsetWorkflow(state: SubsetState): Promise<SubsetResult> {
  let inFlight = 0;
  setHandler(subsetProgressQuery, () => ({ subset: state.subset, units: state.units, done: state.done, inFlight, failed: state.failed, samples: state.samples, paused: state.paused, runs: state.runs }));
  setHandler(pauseSignal, () => void (state.paused = true));
  setHandler(resumeSignal, () => void (state.paused = false));
  upsertSearchAttributes([
    { key: releaseKeyForSubset, value: state.release.releaseId },
    { key: subsetKey, value: state.subset },
  ]);
  const parentId = workflowInfo().parent?.workflowId ?? `release-${state.release.releaseId}`;
  const startedThisRun = { n: 0 };
  const running = new Set<Promise<void>>();
  const details = () =>
    setCurrentDetails(`${state.subset}: ${state.done}/${state.units} units done, ${inFlight} in flight, ${state.failed} failed, ${state.samples} samples${state.paused ? ' (paused)' : ''}`);

  try {
    while (state.nextIndex < state.units && startedThisRun.n < state.unitsPerRun) {
      await condition(() => !state.paused && running.size < state.release.window);
      const unitId = unitIdOf(state.subset, state.nextIndex);
      const child = await startChild(unitWorkflow, {
        workflowId: `${parentId}/${unitId}`,
        taskQueue: TASK_QUEUES.workflows,
        args: [{ release: state.release, unitId }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: [
          { key: releaseKeyForSubset, value: state.release.releaseId },
          { key: subsetKey, value: state.subset },
        ],
      });
      state.nextIndex++;
      startedThisRun.n++;
      inFlight++;
      details();
      const p: Promise<void> = child
        .result()
        .then(
          (r) => {
            state.done++;
            state.samples += r.shard.samples;
            state.articles += r.articles;
          },
          (err: Error) => {
            state.failed++;
            if (state.failures.length < 20) state.failures.push(`${unitId}: ${err.message}`);
          },
        )
        .finally(() => {
          inFlight--;
          running.delete(p);
          details();
        });
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
  if (state.nextIndex < state.units) {
    await continueAsNew<typeof subsetWorkflow>({ ...state, runs: state.runs + 1 });
  }
  const { release: _r, nextIndex: _n, paused: _p, unitsPerRun: _u, ...result } = state;
  return result;
}
