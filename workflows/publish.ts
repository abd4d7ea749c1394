import {
  ApplicationFailure,
  continueAsNew,
  defineQuery,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { HubActivities, IoActivities } from '../activities';
import type { PublishResult } from '../activities/publish/activity';
import type { HubPlanSummary } from '../activities/publish/hub';
import type { ReleaseInput } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';

/**
 * Failures no retry can fix (hub-http.ts NON_RETRYABLE_HUB_ERRORS; repeated here so the workflow bundle stays free
 * of the Hub client): a missing or refused token, a refused payload such as an invalid card, the Hub's repo limits.
 */
export const HUB_NON_RETRYABLE = ['ConfigError', 'HubAuth', 'HubNotFound', 'HubRejected', 'HubLimits'];

// 429s and 5xx are first retried inside the activity (hub-http.ts); what is left rides on these, and a 429 that asks
// for a longer wait sets the next attempt's delay itself (ApplicationFailure.nextRetryDelay).
const hubRetry: RetryPolicy = {
  initialInterval: '2s',
  backoffCoefficient: 2,
  maximumInterval: '10m',
  maximumAttempts: 60,
  nonRetryableErrorTypes: HUB_NON_RETRYABLE,
};

const planner = proxyActivities<Pick<IoActivities, 'planHubPublish'>>({
  taskQueue: TASK_QUEUES.io,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: hubRetry,
});
// The hub queue's dispatch rate (set by its workers, HF_COMMITS_PER_HOUR) keeps commits under the Hub's commit limit.
const committer = proxyActivities<HubActivities>({
  taskQueue: TASK_QUEUES.hub,
  startToCloseTimeout: '6h',
  heartbeatTimeout: '1m',
  retry: hubRetry,
});

export interface PublishTotals {
  commits: number;
  /** Batches found complete in the repo when their turn came (e.g. a commit whose answer was lost). */
  skipped: number;
  filesUploaded: number;
  bytesUploaded: number;
  alreadyPresent: number;
}

export interface PublishWorkflowInput {
  release: ReleaseInput;
  /** Commits per run before continuing as new, to bound history (default 400: about 2,800 events). */
  commitsPerRun?: number;
  /** Set by continue-as-new only: the plan's summary, where to go on, and what is done. */
  resume?: { plan: HubPlanSummary; nextBatch: number; done: PublishTotals };
}

export interface PublishProgress {
  releaseId: string;
  repoId: string;
  phase: 'planning' | 'committing' | 'done';
  planId: string | null;
  /** Commits planned, and the next one to run. */
  batches: number;
  nextBatch: number;
  filesToUpload: number;
  bytesToUpload: number;
  unchanged: number;
  done: PublishTotals;
  current: { batch: number; files: number; bytes: number } | null;
  lastCommit: string | null;
}

export const publishProgressQuery = defineQuery<PublishProgress>('publishProgress');

function human(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * Publishes a finished release to its Hub dataset repo: one planning activity (repo created if missing, tree compared,
 * commits cut; the file lists stay on disk), then one commit activity per batch, in order, on the rate-limited hub
 * queue. Commits run one at a time: each carries the branch head it was checked against (`parentCommit`).
 * Progress: the `publishProgress` query, the workflow's current details, and each commit activity's heartbeats.
 */
export async function publishWorkflow(input: PublishWorkflowInput): Promise<PublishResult> {
  const { release } = input;
  if (release.publish.kind !== 'hub') {
    throw ApplicationFailure.nonRetryable(
      `publishWorkflow publishes to the Hub; publish.kind is ${release.publish.kind}`,
      'ConfigError',
    );
  }
  const repoId = release.publish.repoId;
  const perRun = input.commitsPerRun ?? 400;
  const done: PublishTotals = input.resume?.done ?? {
    commits: 0,
    skipped: 0,
    filesUploaded: 0,
    bytesUploaded: 0,
    alreadyPresent: 0,
  };
  const progress: PublishProgress = {
    releaseId: release.releaseId,
    repoId,
    phase: 'planning',
    planId: null,
    batches: 0,
    nextBatch: input.resume?.nextBatch ?? 0,
    filesToUpload: 0,
    bytesToUpload: 0,
    unchanged: 0,
    done,
    current: null,
    lastCommit: null,
  };
  setHandler(publishProgressQuery, () => progress);

  let plan = input.resume?.plan;
  if (!plan) {
    setCurrentDetails(`planning: comparing release ${release.releaseId} with ${repoId}`);
    plan = await planner.planHubPublish(release);
  }
  Object.assign(progress, {
    phase: 'committing',
    planId: plan.planId,
    batches: plan.batches.length,
    filesToUpload: plan.toUpload,
    bytesToUpload: plan.bytesToUpload,
    unchanged: plan.unchanged,
  });

  const start = progress.nextBatch;
  for (let i = start; i < plan.batches.length; i++) {
    if (i - start >= perRun) {
      await continueAsNew<typeof publishWorkflow>({ ...input, resume: { plan, nextBatch: i, done } });
    }
    const b = plan.batches[i]!;
    progress.current = { batch: i, files: b.files, bytes: b.bytes };
    setCurrentDetails(
      `commit ${i + 1} of ${plan.batches.length} to ${repoId}: ${b.files} files, ${human(b.bytes)}; ` +
        `${done.filesUploaded} of ${plan.toUpload} files (${human(done.bytesUploaded)} of ${human(plan.bytesToUpload)}) uploaded so far`,
    );
    const r = await committer.commitHubBatch({ release, planId: plan.planId, batch: i });
    if (r.committed) done.commits++;
    else done.skipped++;
    done.filesUploaded += r.files;
    done.bytesUploaded += r.bytes;
    done.alreadyPresent += r.alreadyPresent;
    progress.lastCommit = r.commitOid;
    progress.nextBatch = i + 1;
  }
  progress.current = null;
  progress.phase = 'done';
  setCurrentDetails(
    `published to ${plan.target}: ${done.filesUploaded} files (${human(done.bytesUploaded)}) in ${done.commits} commits; ` +
      `${plan.unchanged + done.alreadyPresent} files were already there`,
  );
  return {
    target: plan.target,
    files: plan.files,
    uploaded: done.filesUploaded,
    unchanged: plan.unchanged + done.alreadyPresent,
    commits: done.commits,
    bytesUploaded: done.bytesUploaded,
  };
}
