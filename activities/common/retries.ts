import { Context } from '@temporalio/activity';

/**
 * What a workflow cannot see of itself: which of its activities Temporal is retrying. Its pending activities
 * (from the server, through the worker's client) on attempt 2 or later, as one line for its current details:
 * `fetchArticles attempt 4 (next try 2026-12-03T14:05:00Z): GET ... 500`. Null when none is retrying.
 */
export async function describeRetries(workflowId: string): Promise<string | null> {
  const desc = await Context.current().client.workflow.getHandle(workflowId).describe();
  const parts: string[] = [];
  for (const a of desc.raw.pendingActivities ?? []) {
    if ((a.attempt ?? 1) < 2) continue;
    const next = a.nextAttemptScheduleTime?.seconds
      ? new Date(Number(a.nextAttemptScheduleTime.seconds) * 1000).toISOString()
      : null;
    const error = (a.lastFailure?.cause?.message ?? a.lastFailure?.message ?? 'unknown error')
      .split('\n')[0]!
      .slice(0, 240);
    parts.push(`${a.activityType?.name ?? '?'} attempt ${a.attempt}${next ? ` (next try ${next})` : ''}: ${error}`);
  }
  return parts.length > 0 ? parts.join(' | ') : null;
}
