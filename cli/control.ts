import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { MONTHS } from '@temporalio/client/lib/schedule-types';
import { releaseWorkflowId, ReleaseInputSchema, type ReleaseInputArgs } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { releaseKey, releaseWorkflow } from '../workflows/release';
import { pauseSignal, resumeSignal, subsetProgressQuery, type SubsetProgress } from '../workflows/subset';

/** Pause: running units finish, no new unit starts and no further stage begins, until resume. */
export async function pauseRelease(client: Client, releaseId: string): Promise<void> {
  await client.workflow.getHandle(releaseWorkflowId(releaseId)).signal(pauseSignal);
}

export async function resumeRelease(client: Client, releaseId: string): Promise<void> {
  await client.workflow.getHandle(releaseWorkflowId(releaseId)).signal(resumeSignal);
}

/**
 * Cancel: the request reaches every subset driver and unit; activities stop at their next heartbeat. Outputs stay
 * consistent: every file is written under a temporary name and renamed, and a stage's manifest is written last, so
 * a later `release start` of the same release reuses exactly the stages that finished.
 */
export async function cancelRelease(client: Client, releaseId: string): Promise<void> {
  await client.workflow.getHandle(releaseWorkflowId(releaseId)).cancel();
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
export async function createYearlySchedule(client: Client, args: ReleaseInputArgs, when: YearlySchedule): Promise<string> {
  const input = ReleaseInputSchema.parse(args);
  if (!input.releaseId.includes('{year}')) throw new Error(`a yearly schedule needs {year} in the release id (got ${input.releaseId}), or every run would write the same release`);
  try {
    const handle = await client.schedule.create({
      scheduleId: when.scheduleId,
      spec: { calendars: [{ month: MONTHS[when.month - 1]!, dayOfMonth: when.day, hour: when.hourUtc, minute: 0, comment: 'yearly BIOMEDICA release' }] },
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
    if (err instanceof ScheduleAlreadyRunning) throw new Error(`schedule ${when.scheduleId} already exists: see \`temporal schedule describe --schedule-id ${when.scheduleId}\``);
    throw err;
  }
}
