import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  condition,
  defineQuery,
  getExternalWorkflowHandle,
  executeChild,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { CpuActivities, GpuActivities, IoActivities } from '../activities';
import type { PlanSummary } from '../activities/plan/activity';
import type { PublishResult } from '../activities/publish/activity';
import type { ReleaseSummary } from '../activities/publish/finalize';
import { releaseLocation } from '../config/location';
import type { ReleaseInput } from '../config/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import { cpuOptions, gpuOptions, ioOptions } from './options';
import { publishWorkflow } from './publish';
import { emptyTotals, mergeTables, type StageTable } from './progress';
import {
  pauseSignal,
  resumeSignal,
  subsetReportSignal,
  subsetWorkflow,
  type SubsetProgress,
  type SubsetResult,
} from './subset';
import { watched } from './watch';

const io = proxyActivities<IoActivities>(ioOptions);
const cpu = proxyActivities<CpuActivities>(cpuOptions);
const gpu = proxyActivities<GpuActivities>(gpuOptions);

export const releaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.release, SearchAttributeType.KEYWORD);
export const stageKey = defineSearchAttributeKey(SEARCH_ATTRIBUTES.stage, SearchAttributeType.KEYWORD);

export type ReleaseStage = 'models' | 'plan' | 'units' | 'finalize' | 'publish' | 'done';

export interface ReleaseProgress {
  releaseId: string;
  stage: ReleaseStage;
  paused: boolean;
  /** Workflow ids of the subset drivers while units run (query each with subsetProgress for live counts). */
  subsetWorkflows: string[];
  units: { total: number; done: number; inFlight: number; failed: number };
  samples: number;
  plan: PlanSummary | null;
  /**
   * Per unit stage: done, in flight, failed, rejected, rate and ETA, added up from the subset drivers' latest
   * reports (each sent every ~1% of its units, so a little behind; query a driver's subsetProgress for live
   * counts). Absent before the units stage.
   */
  stages?: StageTable;
  /** The latest report of each subset driver. */
  subsets?: SubsetProgress[];
}

export interface ReleaseResult {
  releaseId: string;
  plan: PlanSummary;
  summary: ReleaseSummary;
  publish: PublishResult;
  outputs: string;
  /** The final per-stage table of the units. */
  stages: StageTable;
}

export const progressQuery = defineQuery<ReleaseProgress>('progress');

/** The yearly release: models and plan, every unit through every stage (a bounded window of child workflows), then finalize and publish. */
export async function releaseWorkflow(input: ReleaseInput): Promise<ReleaseResult> {
  input = resolveScheduledRelease(input);
  const progress: ReleaseProgress = {
    releaseId: input.releaseId,
    stage: 'models',
    paused: false,
    subsetWorkflows: [],
    units: { total: 0, done: 0, inFlight: 0, failed: 0 },
    samples: 0,
    plan: null,
  };
  const reports = new Map<string, SubsetProgress>();
  setHandler(subsetReportSignal, (report) => {
    const before = reports.get(report.subset);
    // Signals may arrive out of order: the report with the higher number wins.
    if (!before || report.seq > before.seq) reports.set(report.subset, report);
  });
  setHandler(progressQuery, (): ReleaseProgress => {
    if (reports.size === 0) return progress;
    const subsets = [...reports.values()];
    const sum = (f: (r: SubsetProgress) => number) => subsets.reduce((n, r) => n + f(r), 0);
    return {
      ...progress,
      units: {
        total: progress.units.total,
        done: sum((r) => r.done),
        inFlight: sum((r) => r.inFlight),
        failed: sum((r) => r.failed),
      },
      samples: sum((r) => r.samples),
      stages: mergeTables(subsets.map((r) => r.stages)),
      subsets,
    };
  });
  // Pause and resume: stages wait between steps; subset drivers stop starting new units (running ones finish).
  const forward = (signal: typeof pauseSignal | typeof resumeSignal) => signalDrivers(progress.subsetWorkflows, signal);
  setHandler(pauseSignal, () => {
    progress.paused = true;
    forward(pauseSignal);
  });
  setHandler(resumeSignal, () => {
    progress.paused = false;
    forward(resumeSignal);
  });
  const unpaused = () => condition(() => !progress.paused);
  const enter = (stage: ReleaseStage, details: string) => {
    progress.stage = stage;
    upsertSearchAttributes([{ key: stageKey, value: stage }]);
    setCurrentDetails(details);
  };
  upsertSearchAttributes([{ key: releaseKey, value: input.releaseId }]);

  // A stage that is one activity of the release's own: its details also say when Temporal keeps retrying it (the
  // units say so in theirs).
  const step = <T>(stage: ReleaseStage, text: string, call: () => Promise<T>): Promise<T> => {
    enter(stage, text);
    return watched(input.retryReportSeconds * 1000, text, call);
  };
  await step('models', 'preparing the embedding model and taxonomy', () => gpu.ensureAnnotationModels(input));
  const plan = await step('plan', 'reading the inventory and metadata', () => io.planRelease(input));
  progress.plan = plan;

  await unpaused();
  await runSubsets(input, plan, progress, enter);

  await unpaused();
  const summary = await step('finalize', 'writing shard indexes and the rejection report', () =>
    cpu.finalizeRelease(input),
  );
  await unpaused();
  // Hub publishing is a child workflow (plan, then one commit activity per batch on the rate-limited hub queue);
  // the embedded default's local folder is one activity.
  let publish: PublishResult;
  if (input.publish.kind === 'hub') {
    enter('publish', `publishing to the Hub repo ${input.publish.repoId}`);
    publish = await executeChild(publishWorkflow, {
      workflowId: `${workflowInfo().workflowId}/publish`,
      taskQueue: TASK_QUEUES.workflows,
      args: [{ release: input }],
    });
  } else publish = await step('publish', 'publishing to the local folder', () => io.publishRelease(input));
  enter(
    'done',
    `${summary.samples} samples in ${Object.values(summary.subsets).reduce((n, s) => n + s.shards, 0)} shards; published to ${publish.target}`,
  );
  const stages = mergeTables([...reports.values()].map((r) => r.stages));
  return {
    releaseId: input.releaseId,
    plan,
    summary,
    publish,
    outputs: releaseLocation(input),
    stages,
  };
}

/** Pause or resume passed on to the subset drivers (one that has ended ignores it). */
function signalDrivers(ids: readonly string[], signal: typeof pauseSignal | typeof resumeSignal): void {
  for (const id of ids)
    void getExternalWorkflowHandle(id)
      .signal(signal)
      .catch(() => undefined);
}

/** A release id with `{year}` (a Temporal Schedule's yearly run) takes the year the run started, in UTC. */
export function resolveScheduledRelease(input: ReleaseInput): ReleaseInput {
  if (!input.releaseId.includes('{year}')) return input;
  return {
    ...input,
    releaseId: input.releaseId.replace('{year}', String(new Date(workflowInfo().startTime).getUTCFullYear())),
  };
}

async function runSubsets(
  input: ReleaseInput,
  plan: PlanSummary,
  progress: ReleaseProgress,
  enter: (stage: ReleaseStage, details: string) => void,
): Promise<void> {
  const subsets = (['commercial', 'noncommercial', 'other'] as const).filter((s) => plan.subsets[s].units > 0);
  const total = subsets.reduce((n, s) => n + plan.subsets[s].units, 0);
  progress.units.total = total;
  enter('units', `${total} units in ${subsets.length} subsets`);
  const parentId = workflowInfo().workflowId;
  // The window is shared out by size, so the small subsets do not starve the large one (at least one each).
  const handles = await Promise.all(
    subsets.map((subset) =>
      startChild(subsetWorkflow, {
        workflowId: `${parentId}/subset-${subset}`,
        taskQueue: TASK_QUEUES.workflows,
        staticSummary: `${subset} subset of release ${input.releaseId}: ${plan.subsets[subset].units} units, ${plan.subsets[subset].articles} articles`,
        args: [
          {
            release: { ...input, window: Math.max(1, Math.floor((input.window * plan.subsets[subset].units) / total)) },
            subset,
            units: plan.subsets[subset].units,
            nextIndex: 0,
            done: 0,
            failed: 0,
            samples: 0,
            articles: 0,
            failures: [],
            paused: progress.paused,
            runs: 1,
            unitsPerRun: input.unitsPerRun,
            stages: emptyTotals(),
            startedAt: null,
            reports: 0,
          },
        ],
      }),
    ),
  );
  progress.subsetWorkflows = handles.map((h) => h.workflowId);
  // A pause that came while the drivers were being started reached none of them: pass it on now.
  if (progress.paused) signalDrivers(progress.subsetWorkflows, pauseSignal);
  const settled = handles.map((h) =>
    h.result().then((r) => {
      progress.units.done += r.done;
      progress.units.failed += r.failed;
      progress.samples += r.samples;
      setCurrentDetails(`units: ${progress.units.done}/${total} done in finished subsets, ${progress.samples} samples`);
      return r;
    }),
  );
  let results: SubsetResult[];
  try {
    results = await Promise.all(settled);
  } catch (err) {
    // Cancelled: close only after every subset driver (and so every unit) has finished cancelling.
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => Promise.allSettled(settled));
    throw err;
  }
  progress.subsetWorkflows = [];
  const failures = results.flatMap((r) => r.failures);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  if (failed > 0)
    throw ApplicationFailure.nonRetryable(
      `${failed} of ${total} units failed: ${failures.slice(0, 5).join('; ')}`,
      'UnitsFailed',
    );
}
