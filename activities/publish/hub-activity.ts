/**
 * Temporal adapters for Hub publishing: the token from the worker's environment, heartbeats carrying progress
 * (counts and phases only), and every failure turned into an ApplicationFailure whose message is scrubbed of secrets.
 */
import { ApplicationFailure, log } from '@temporalio/activity';
import type { ReleaseInput } from '../../config/release';
import { cancellationSignal, heartbeat } from '../common/stage';
import {
  commitPlannedBatch,
  planHub,
  type CommitBatchResult,
  type HubPlanSummary,
  type HubProgress,
  type HubSession,
} from './hub';
import { hubToken } from './hub-env';
import { classifyHubError, hubFetch, HubPublishError } from './hub-http';

export type { CommitBatchResult, HubPlanSummary, HubProgress } from './hub';

export interface HubCommitTask {
  release: ReleaseInput;
  planId: string;
  batch: number;
}

/** Heartbeat details of a Hub activity (visible in `temporal workflow describe` and the UI while it runs). */
export interface HubHeartbeat extends HubProgress {
  step: string;
  retries: number;
}

async function withHub<R>(
  release: ReleaseInput,
  step: string,
  fn: (s: HubSession, progress: (p: HubProgress) => void) => Promise<R>,
): Promise<R> {
  let token: string | undefined;
  let http: ReturnType<typeof hubFetch> | undefined;
  let last: HubHeartbeat = { step, phase: 'reading-repo', files: 0, bytes: 0, bytesDone: 0, retries: 0 };
  let lastBeat = 0;
  const beat = () => {
    lastBeat = Date.now();
    heartbeat(last);
  };
  // Long single requests (a big commit's answer, a slow LFS PUT) still heartbeat, so a dead worker is noticed in time.
  const timer = setInterval(beat, 5_000);
  try {
    if (release.publish.kind !== 'hub')
      throw new HubPublishError('ConfigError', `publish.kind is ${release.publish.kind}, not hub`);
    token = hubToken();
    const signal = cancellationSignal();
    http = hubFetch({
      signal,
      onRetry: (n) => {
        last = { ...last, retries: last.retries + 1 };
        log.warn('Hub request retried', {
          step,
          route: n.route,
          status: n.status,
          requestTry: n.attempt,
          delayMs: n.delayMs,
        });
      },
    });
    const session: HubSession = {
      token,
      endpoint: release.publish.endpoint,
      repoId: release.publish.repoId,
      http,
      signal,
    };
    beat();
    return await fn(session, (p) => {
      const phaseChanged = p.phase !== last.phase;
      last = { ...last, ...p };
      if (phaseChanged || Date.now() - lastBeat >= 1_000) beat();
    });
  } catch (err) {
    const c = classifyHubError(err, [token], http?.lastRetryAfterMs);
    log.warn('Hub step failed', {
      step,
      type: c.type,
      status: c.status ?? null,
      retryable: c.retryable,
      message: c.message,
    });
    throw ApplicationFailure.create({
      message: c.message,
      type: c.type,
      nonRetryable: !c.retryable,
      details: [{ status: c.status ?? null }],
      ...(c.retryAfterMs !== undefined ? { nextRetryDelay: Math.min(3_600_000, Math.max(1_000, c.retryAfterMs)) } : {}),
    });
  } finally {
    clearInterval(timer);
  }
}

/**
 * Plans a Hub publish (runs on the io queue): the card, the repo created if missing, the tree compared, the commits
 * cut. Returns counts only; the file lists stay in `<release>/publish/hub-plan-<planId>.json`.
 */
export async function planHubPublish(release: ReleaseInput): Promise<HubPlanSummary> {
  const plan = await withHub(release, 'plan', (s, progress) => planHub(release, s, progress));
  log.info('Hub publish planned', {
    repoId: plan.repoId,
    files: plan.files,
    unchanged: plan.unchanged,
    toUpload: plan.toUpload,
    bytesToUpload: plan.bytesToUpload,
    commits: plan.batches.length,
    createdRepo: plan.createdRepo,
  });
  return plan;
}

/** One planned commit (runs on the rate-limited biomedica-hub queue). */
export async function commitHubBatch(task: HubCommitTask): Promise<CommitBatchResult> {
  const r = await withHub(task.release, `commit ${task.batch}`, (s, progress) =>
    commitPlannedBatch(task.release, task.planId, task.batch, s, progress),
  );
  log.info(r.committed ? 'Hub commit made' : 'Hub commit skipped: batch already in the repo', {
    batch: r.batch,
    commit: r.commitOid,
    files: r.files,
    bytes: r.bytes,
    alreadyPresent: r.alreadyPresent,
  });
  return r;
}
