import { ScheduleAlreadyRunning, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { MONTHS } from '@temporalio/client/lib/schedule-types';
import { releaseWorkflowId, ReleaseInputSchema, type ReleaseInputArgs } from '../config/release';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';
import { releaseKey, releaseWorkflow } from '../workflows/release';
import { pauseSignal, resumeSignal, subsetProgressQuery, type SubsetProgress } from '../workflows/subset';

/** Where a release's workflow is: its id and, for a run a Schedule started, the run found by search attribute. */
export interface ReleaseWorkflowRef {
  workflowId: string;
  /** Set when found by search attribute (a Schedule's run, whose workflow id ends in a timestamp). */
  runId?: string;
}

/**
 * The workflow of a release id. A release started by `release start` has the id `release-<id>`; a run a yearly
 * Schedule started has the Schedule's id plus a timestamp, and carries the resolved release id (the year filled
 * in) in the BiomedicaRelease search attribute, so it is looked up there: a running one first, else the newest.
 * Null when neither exists.
 */
export async function findReleaseWorkflow(client: Client, releaseId: string): Promise<ReleaseWorkflowRef | null> {
  const workflowId = releaseWorkflowId(releaseId);
  try {
    await client.workflow.getHandle(workflowId).describe();
    return { workflowId };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  const query = `WorkflowType = 'releaseWorkflow' AND ${SEARCH_ATTRIBUTES.release} = '${releaseId.replace(/['\\]/g, '')}'`;
  let best: { workflowId: string; runId: string; running: boolean; start: number } | null = null;
  for await (const wf of client.workflow.list({ query })) {
    const c = {
      workflowId: wf.workflowId,
      runId: wf.runId,
      running: wf.status.name === 'RUNNING',
      start: wf.startTime.getTime(),
    };
    if (!best || (c.running && !best.running) || (c.running === best.running && c.start > best.start)) best = c;
  }
  return best ? { workflowId: best.workflowId, runId: best.runId } : null;
}

/** The handle of a release's workflow, or an error that says where to look. */
async function releaseHandle(client: Client, releaseId: string) {
  const ref = await findReleaseWorkflow(client, releaseId);
  if (!ref)
    throw new Error(
      `no release workflow for ${releaseId}: neither ${releaseWorkflowId(releaseId)} nor a run with ${SEARCH_ATTRIBUTES.release} = '${releaseId}'`,
    );
  return client.workflow.getHandle(ref.workflowId, ref.runId);
}

/** Pause: running units finish, no new unit starts and no further stage begins, until resume. */
export async function pauseRelease(client: Client, releaseId: string): Promise<void> {
  await (await releaseHandle(client, releaseId)).signal(pauseSignal);
}

export async function resumeRelease(client: Client, releaseId: string): Promise<void> {
  await (await releaseHandle(client, releaseId)).signal(resumeSignal);
}

/**
 * Cancel: the request reaches every subset driver and unit; activities stop at their next heartbeat. Outputs stay
 * consistent: every file is written under a temporary name and renamed, and a stage's manifest is written last, so
 * a later `release start` of the same release reuses exactly the stages that finished.
 */
export async function cancelRelease(client: Client, releaseId: string): Promise<void> {
  await (await releaseHandle(client, releaseId)).cancel();
}

/** Live counts of the subset drivers of a running release (empty outside the units stage). */
export async function subsetProgress(client: Client, workflowIds: string[]): Promise<SubsetProgress[]> {
  const out: SubsetProgress[] = [];
  for (const id of workflowIds) {
    const p = await client.workflow
      .getHandle(id)
      .query(subsetProgressQuery)
      .catch(() => null);
    if (p) out.push(p);
  }
  return out;
}

export interface YearlySchedule {
  scheduleId: string;
  month: number;
  day: number;
  hourUtc: number;
}

/**
 * A Temporal Schedule that starts the release every year (UTC). The config's release id should contain `{year}`
 * (e.g. "biomedica-{year}"): each run takes the year it starts in. Missed runs are caught up within 30 days.
 */
export async function createYearlySchedule(
  client: Client,
  args: ReleaseInputArgs,
  when: YearlySchedule,
): Promise<string> {
  const input = ReleaseInputSchema.parse(args);
  if (!input.releaseId.includes('{year}'))
    throw new Error(
      `a yearly schedule needs {year} in the release id (got ${input.releaseId}), or every run would write the same release`,
    );
  try {
    const handle = await client.schedule.create({
      scheduleId: when.scheduleId,
      spec: {
        calendars: [
          {
            month: MONTHS[when.month - 1]!,
            dayOfMonth: when.day,
            hour: when.hourUtc,
            minute: 0,
            comment: 'yearly BIOMEDICA release',
          },
        ],
      },
      action: {
        type: 'startWorkflow',
        workflowType: releaseWorkflow,
        workflowId: releaseWorkflowId(input.releaseId.replace('{year}', 'yearly')),
        taskQueue: TASK_QUEUES.workflows,
        args: [input],
        typedSearchAttributes: [{ key: releaseKey, value: input.releaseId }],
        memo: { releaseId: input.releaseId, dataDir: input.dataDir, schedule: when.scheduleId },
      },
      policies: { overlap: 'SKIP', catchupWindow: '30 days', pauseOnFailure: true },
    });
    return handle.scheduleId;
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning)
      throw new Error(
        `schedule ${when.scheduleId} already exists: see \`temporal schedule describe --schedule-id ${when.scheduleId}\``,
        { cause: err },
      );
    throw err;
  }
}
