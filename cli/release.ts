import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { connectOptions, temporalConnectionConfig, unreachable, workflowUiLink } from '../config/connection';
import { releaseWorkflowId, ReleaseInputSchema, type ReleaseInputArgs, type ReleaseInput } from '../config/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import {
  progressQuery,
  releaseWorkflow,
  releaseKey,
  type ReleaseProgress,
  type ReleaseResult,
} from '../workflows/release';
import { mergeTables, UNIT_STAGES, type StageTable } from '../workflows/progress';
import type { SubsetProgress } from '../workflows/subset';
import { findReleaseWorkflow, subsetProgress } from './control';

/** A client of the server config/connection.ts names (the embedded default, a cluster, Temporal Cloud); `address` overrides. */
export async function connectClient(address?: string): Promise<Client> {
  const cfg = temporalConnectionConfig(process.env, { address });
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...connectOptions(cfg), connectTimeout: '10s' });
  } catch (err) {
    throw unreachable(cfg, err);
  }
  return new Client({ connection, namespace: cfg.namespace });
}

export function uiLink(workflowId: string): string {
  return workflowUiLink(temporalConnectionConfig(), workflowId);
}

export type StartOutcome =
  | { kind: 'started'; workflowId: string; runId: string }
  | { kind: 'attached'; workflowId: string; runId: string }
  | { kind: 'already-completed'; workflowId: string; runId: string; closedAt: Date | undefined };

/**
 * Starts a release, or attaches to it: the workflow id is derived from the release id, so a release that
 * already runs is joined, one that finished is reported as finished, and one that failed or was terminated
 * is started again (its finished stages are reused from disk).
 */
export async function startRelease(client: Client, args: ReleaseInputArgs): Promise<StartOutcome> {
  const input: ReleaseInput = ReleaseInputSchema.parse(args);
  const workflowId = releaseWorkflowId(input.releaseId);
  try {
    const handle = await client.workflow.start(releaseWorkflow, {
      workflowId,
      taskQueue: TASK_QUEUES.workflows,
      args: [input],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      typedSearchAttributes: [{ key: releaseKey, value: input.releaseId }],
      memo: {
        releaseId: input.releaseId,
        dataDir: input.dataDir,
        store: input.store ?? null,
        source: input.source.kind,
      },
      staticSummary: `BIOMEDICA release ${input.releaseId}`,
    });
    return { kind: 'started', workflowId, runId: handle.firstExecutionRunId };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  const desc = await client.workflow.getHandle(workflowId).describe();
  if (desc.status.name === 'RUNNING') return { kind: 'attached', workflowId, runId: desc.runId };
  return { kind: 'already-completed', workflowId, runId: desc.runId, closedAt: desc.closeTime };
}

export interface ReleaseStatus {
  workflowId: string;
  status: string;
  startTime: Date;
  closeTime: Date | undefined;
  historyLength: number;
  progress: ReleaseProgress | null;
  subsets: SubsetProgress[];
  result: ReleaseResult | null;
  /** Why a release that failed, was cancelled or terminated ended (its failure's message chain). */
  failure: string | null;
  /** Activities of the release and of its running units that have failed at least once and are being retried. */
  retrying: RetryingActivity[];
  ui: string;
}

/** An activity Temporal is retrying: which, where, the attempt it is on, its last error and the next try. */
export interface RetryingActivity {
  workflowId: string;
  activity: string;
  attempt: number;
  lastFailure: string | null;
  nextAttempt: Date | null;
}

/** How many running units `release status` looks into for failing activities (each is one describe call). */
const RETRY_SCAN_UNITS = 200;

/** Pending activities on attempt 2 or later in these workflows. */
async function retryingIn(client: Client, workflowIds: readonly string[]): Promise<RetryingActivity[]> {
  const out: RetryingActivity[] = [];
  for (const id of workflowIds) {
    const desc = await client.workflow
      .getHandle(id)
      .describe()
      .catch(() => null);
    for (const a of desc?.raw.pendingActivities ?? []) {
      if ((a.attempt ?? 1) < 2) continue;
      const next = a.nextAttemptScheduleTime?.seconds;
      out.push({
        workflowId: id,
        activity: a.activityType?.name ?? '?',
        attempt: a.attempt ?? 1,
        lastFailure: a.lastFailure?.message ? failureChain(a.lastFailure) : null,
        nextAttempt: next ? new Date(Number(next) * 1000) : null,
      });
    }
  }
  return out;
}

/** The release's running unit workflows (by search attribute), at most `limit`. */
async function runningUnits(client: Client, releaseId: string, limit: number): Promise<string[]> {
  const ids: string[] = [];
  const query = `WorkflowType = 'unitWorkflow' AND ExecutionStatus = 'Running' AND ${SEARCH_ATTRIBUTES.release} = '${releaseId.replace(/['\\]/g, '')}'`;
  for await (const w of client.workflow.list({ query })) {
    ids.push(w.workflowId);
    if (ids.length >= limit) break;
  }
  return ids;
}

/** A query that gives up after `ms` (a closed workflow is answered only while a worker polls its queue). */
async function queryWithin<T>(client: Client, ms: number, fn: () => Promise<T>): Promise<T | null> {
  return client.connection.withDeadline(Date.now() + ms, fn).catch(() => null);
}

/** A failure's message with its causes: "unit x failed: activity y failed: 503 ...". */
function failureChain(err: unknown): string {
  const parts: string[] = [];
  for (
    let e = err as { message?: string; cause?: unknown } | undefined;
    e && parts.length < 6;
    e = e.cause as typeof e
  ) {
    if (e.message && !parts.includes(e.message)) parts.push(e.message);
  }
  return parts.join(': ');
}

export async function releaseStatus(client: Client, releaseId: string): Promise<ReleaseStatus | null> {
  const ref = await findReleaseWorkflow(client, releaseId);
  if (!ref) return null;
  const { workflowId } = ref;
  const handle = client.workflow.getHandle<typeof releaseWorkflow>(workflowId, ref.runId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
  const status: ReleaseStatus = {
    workflowId,
    status: desc.status.name,
    startTime: desc.startTime,
    closeTime: desc.closeTime,
    historyLength: desc.historyLength,
    progress: null,
    subsets: [],
    result: null,
    failure: null,
    retrying: [],
    ui: uiLink(workflowId),
  };
  if (desc.status.name === 'COMPLETED') status.result = await handle.result();
  else if (desc.status.name !== 'RUNNING') {
    // Failed, cancelled, terminated: say why, and where it stood (the release's last progress, from its history,
    // when a worker is there to answer the query).
    status.failure = await handle.result().then(
      () => null,
      (err: unknown) => failureChain(err),
    );
    status.progress = await queryWithin(client, 5_000, () => handle.query(progressQuery));
  } else {
    status.progress = await handle.query(progressQuery).catch(() => null);
    if (status.progress?.subsetWorkflows?.length) {
      // Live unit counts come from the subset drivers; the release only adds them up when a subset finishes.
      status.subsets = await subsetProgress(client, status.progress.subsetWorkflows);
      const u = status.progress.units;
      u.done = status.subsets.reduce((n, s) => n + s.done, 0);
      u.inFlight = status.subsets.reduce((n, s) => n + s.inFlight, 0);
      u.failed = status.subsets.reduce((n, s) => n + s.failed, 0);
      status.progress.samples = status.subsets.reduce((n, s) => n + s.samples, 0);
      status.progress.stages = mergeTables(status.subsets.map((s) => s.stages));
    }
    // A release stuck in retries shows only "Running" in the list: say which activities keep failing, and why.
    const units = await runningUnits(client, status.progress?.releaseId ?? releaseId, RETRY_SCAN_UNITS).catch(() => []);
    status.retrying = await retryingIn(client, [workflowId, ...units]);
  }
  return status;
}

export function formatStatus(s: ReleaseStatus): string {
  const lines = [
    `release workflow ${s.workflowId}: ${s.status} (started ${s.startTime.toISOString()}${s.closeTime ? `, closed ${s.closeTime.toISOString()}` : ''}, ${s.historyLength} history events)`,
  ];
  if (s.failure) {
    lines.push(`  ended by: ${s.failure}`);
    lines.push('  `release start` with the same config starts it again, reusing every stage that finished');
  }
  if (s.retrying.length > 0) {
    lines.push(
      `  retrying: ${s.retrying.length} activit${s.retrying.length === 1 ? 'y' : 'ies'} failed and ${s.retrying.length === 1 ? 'is' : 'are'} being tried again`,
    );
    for (const r of s.retrying.slice(0, 10)) {
      const next = r.nextAttempt ? `, next try ${r.nextAttempt.toISOString()}` : '';
      lines.push(
        `    ${r.workflowId} ${r.activity}: attempt ${r.attempt}${next}; last error: ${(r.lastFailure ?? 'unknown').slice(0, 300)}`,
      );
    }
    if (s.retrying.length > 10)
      lines.push(
        `    ... and ${s.retrying.length - 10} more (the Temporal UI lists them under each workflow's pending activities)`,
      );
  }
  if (s.progress) {
    const p = s.progress;
    lines.push(
      `  ${s.status === 'RUNNING' ? 'stage' : 'last stage'}: ${p.stage}${p.paused ? ' (PAUSED)' : ''}; units ${p.units.done}/${p.units.total} done, ${p.units.inFlight} in flight, ${p.units.failed} failed; ${p.samples} samples so far`,
    );
    for (const sp of s.subsets)
      lines.push(
        `    ${sp.subset}: ${sp.done}/${sp.units} units, ${sp.inFlight} in flight, ${sp.failed} failed, ${sp.samples} samples (driver run ${sp.runs})${sp.paused ? ', paused' : ''}`,
      );
    if (p.stages) lines.push(...formatStageTable(p.stages, p.units.total));
  }
  if (s.result) {
    const r = s.result;
    lines.push(
      `  articles: ${r.summary.articles.planned} planned, ${r.summary.articles.parsed} parsed; figures ${r.summary.figures}; samples ${r.summary.samples}; rejected ${r.summary.rejected}`,
    );
    for (const [subset, v] of Object.entries(r.summary.subsets)) {
      if (v.shards)
        lines.push(`  ${subset}: ${v.shards} shards, ${v.samples} samples, ${v.articles} articles, ${v.bytes} bytes`);
    }
    if (Object.keys(r.summary.rejectedByReason).length)
      lines.push(`  rejected by stage:reason: ${JSON.stringify(r.summary.rejectedByReason)}`);
    if (r.stages)
      lines.push(
        '  units by stage:',
        ...formatStageTable(
          r.stages,
          r.plan.subsets ? Object.values(r.plan.subsets).reduce((n, x) => n + x.units, 0) : 0,
        ),
      );
    lines.push(`  outputs: ${r.outputs}/{webdataset,parquet,report}`);
    lines.push(
      `  published (Hub layout): ${r.publish.target} (${r.publish.uploaded} files written, ${r.publish.unchanged} unchanged)`,
    );
  }
  lines.push(`  Temporal UI: ${s.ui}`);
  return lines.join('\n');
}

export { SEARCH_ATTRIBUTES };

function duration(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/** The per-stage table: units done, in flight and failed, rejections, units per hour and time left, one row a stage. */
export function formatStageTable(stages: StageTable, total: number): string[] {
  const rows = UNIT_STAGES.map((st) => {
    const r = stages[st];
    return [
      st,
      `${r.done}/${total}`,
      String(r.inFlight),
      String(r.failed),
      String(r.rejected),
      r.unitsPerHour === null ? '-' : r.unitsPerHour.toFixed(1),
      duration(r.etaSeconds),
    ];
  });
  const head = ['stage', 'done', 'in flight', 'failed', 'rejected', 'units/h', 'ETA'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    '    ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)];
}

/** A one-line progress bar for `release status --watch`, with a rate and ETA from the watcher's own observations. */
export function progressLine(p: ReleaseProgress, elapsedMs: number, unitsAtStart: number, width = 30): string {
  const { total, done, inFlight, failed } = p.units;
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const rate = elapsedMs > 0 ? ((done - unitsAtStart) / elapsedMs) * 60_000 : 0;
  const minutesLeft = rate > 0 ? (total - done) / rate : NaN;
  const eta = Number.isNaN(minutesLeft)
    ? 'ETA after the first unit'
    : minutesLeft < 1
      ? `${Math.ceil(minutesLeft * 60)} s left`
      : `${Math.ceil(minutesLeft)} min left`;
  return `${bar} ${p.stage}: ${done}/${total} units, ${inFlight} in flight, ${failed} failed, ${p.samples} samples; ${rate.toFixed(1)} units/min, ${eta}`;
}
